"""A sweep's results as two Parquet tables: one row per trial, and one per trial per epoch."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from study.best import best_trial
from study.vocabulary import (
    BEST_SCORE,
    EPOCH,
    EPOCH_COLUMNS,
    EPOCHS_FILE,
    FINAL_SCORE,
    LOSS,
    SCORE,
    SUMMARY_METRICS,
    TRIALS_FILE,
    Outcome,
    stop_reason_of,
)
from trainables.ray_trainable import NODES_KEY

BEST_COLUMN = "best"
"""In ``trials.parquet``: true for the sweep's best trial (:mod:`study.best`)."""


@dataclass(frozen=True)
class TrialRecord:
    """What the tables need from one trial, independent of Ray's result objects."""

    trial_id: str
    overrides: dict[str, Any]
    config: dict[str, Any]
    history: list[dict[str, Any]]
    error: str | None
    run_id: str | None = None

    def status(self, max_epochs: int) -> Outcome:
        if self.error is not None:
            return Outcome.FAILED
        return Outcome.of_result(self.history[-1] if self.history else None, max_epochs)

    @property
    def stop_reason(self) -> str | None:
        return stop_reason_of(self.history[-1]) if self.history else None

    @property
    def nodes(self) -> str | None:
        """The Ray nodes the trial's workers ran on, in order of first use, comma-joined."""
        seen = dict.fromkeys(
            node
            for row in self.history
            for node in str(row.get(NODES_KEY) or "").split(",")
            if node
        )
        return ",".join(seen) or None


def _number(value: Any) -> float | None:
    return (
        float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else None
    )


def _column(values: list[Any]) -> pa.Array:
    """Numbers stay float64 (None where missing); anything else becomes a string column."""
    present = [value for value in values if value is not None]
    if all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in present):
        return pa.array([None if value is None else float(value) for value in values], pa.float64())
    return pa.array([None if value is None else str(value) for value in values], pa.string())


def trials_table(records: Iterable[TrialRecord], max_epochs: int) -> pa.Table:
    records = list(records)
    keys = sorted({key for record in records for key in record.overrides})
    columns: dict[str, pa.Array] = {
        "trial_id": pa.array([r.trial_id for r in records], pa.string()),
        "status": pa.array([r.status(max_epochs).value for r in records], pa.string()),
        "epochs_run": pa.array([len(r.history) for r in records], pa.int64()),
        "mlflow_run_id": pa.array([r.run_id for r in records], pa.string()),
        "error": pa.array([r.error for r in records], pa.string()),
        "stop_reason": pa.array([r.stop_reason for r in records], pa.string()),
        NODES_KEY: pa.array([r.nodes for r in records], pa.string()),
        "config_json": pa.array(
            [json.dumps(r.config, sort_keys=True) for r in records], pa.string()
        ),
    }
    for key in keys:
        columns[f"param.{key}"] = _column([r.overrides.get(key) for r in records])
    for metric in SUMMARY_METRICS:
        finals, bests, best_epochs = [], [], []
        for record in records:
            values = [(_number(row.get(metric)), row.get(EPOCH)) for row in record.history]
            values = [(value, epoch) for value, epoch in values if value is not None]
            finals.append(values[-1][0] if values else None)
            best = max(values, default=None) if metric != LOSS else min(values, default=None)
            bests.append(best[0] if best else None)
            best_epochs.append(best[1] if best else None)
        columns[f"final_{metric}"] = pa.array(finals, pa.float64())
        columns[f"best_{metric}"] = pa.array(bests, pa.float64())
        if metric == SCORE:
            columns["best_epoch"] = pa.array(best_epochs, pa.int64())
    table = pa.table(columns)
    best = best_trial(table.select(["trial_id", "status", FINAL_SCORE, BEST_SCORE]).to_pylist())
    chosen = [
        best is not None and trial_id == best.trial_id for trial_id in table["trial_id"].to_pylist()
    ]
    return table.append_column(BEST_COLUMN, pa.array(chosen, pa.bool_()))


def epochs_table(records: Iterable[TrialRecord]) -> pa.Table:
    rows = [(record.trial_id, row) for record in records for row in record.history]
    columns: dict[str, pa.Array] = {
        "trial_id": pa.array([trial_id for trial_id, _ in rows], pa.string())
    }
    for metric in EPOCH_COLUMNS:
        values = [_number(row.get(metric)) for _, row in rows]
        columns[metric] = (
            pa.array([None if v is None else int(v) for v in values], pa.int64())
            if metric == EPOCH
            else pa.array(values, pa.float64())
        )
    columns[NODES_KEY] = pa.array(
        [row.get(NODES_KEY) if isinstance(row.get(NODES_KEY), str) else None for _, row in rows],
        pa.string(),
    )
    return pa.table(columns)


def write_tables(records: list[TrialRecord], max_epochs: int, directory: Path) -> tuple[Path, Path]:
    """Write both tables atomically (a half-written file never replaces a good one)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for table, name in (
        (trials_table(records, max_epochs), TRIALS_FILE),
        (epochs_table(records), EPOCHS_FILE),
    ):
        partial = directory / (name + ".partial")
        pq.write_table(table, partial)
        partial.replace(directory / name)
        paths.append(directory / name)
    return paths[0], paths[1]


def fill_run_ids(trials_path: Path, run_ids: dict[str, str]) -> int:
    """Fill the ``mlflow_run_id`` of trials whose run did not exist yet when the table was
    written (MLflow did not answer); rewritten atomically. Returns how many were filled."""
    table = pq.read_table(trials_path)
    before = table["mlflow_run_id"].to_pylist()
    after = [
        run_id or run_ids.get(trial_id)
        for run_id, trial_id in zip(before, table["trial_id"].to_pylist())
    ]
    filled = sum(1 for old, new in zip(before, after) if old != new)
    if filled:
        index = table.schema.get_field_index("mlflow_run_id")
        partial = trials_path.with_name(trials_path.name + ".partial")
        pq.write_table(
            table.set_column(index, "mlflow_run_id", pa.array(after, pa.string())), partial
        )
        partial.replace(trials_path)
    return filled


def has_gap(history: list[dict[str, Any]]) -> bool:
    """Whether epochs before the last are missing (a restart from a Tune state older than the
    trial's last report)."""
    return [int(row.get(EPOCH, 0)) for row in history] != list(range(1, len(history) + 1))


def with_logged_epochs(record: TrialRecord, logged: dict[int, dict[str, float]]) -> TrialRecord:
    """``record`` with the epochs only the tracking store kept (``logged``: epoch -> metrics)
    filled in, so the tables have every epoch the trial trained."""
    present = {int(row.get(EPOCH, 0)) for row in record.history}
    rows = record.history + [
        {EPOCH: epoch, **metrics} for epoch, metrics in logged.items() if epoch not in present
    ]
    return dataclasses.replace(record, history=sorted(rows, key=lambda row: int(row[EPOCH])))


def one_row_per_epoch(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A trial's results with each epoch once: an epoch trained again after a worker restart
    (from a checkpoint older than its last report) keeps its latest record, in epoch order."""
    by_epoch = {int(row.get(EPOCH, index + 1)): dict(row) for index, row in enumerate(rows)}
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def records_from_results(
    result_grid: Any, base_config: Any, run_ids: dict[str, str]
) -> list[TrialRecord]:
    """TrialRecords from a Ray Tune ``ResultGrid``."""
    records = []
    for result in result_grid:
        overrides = dict(result.config or {})
        frame = result.metrics_dataframe
        history = one_row_per_epoch([] if frame is None else frame.to_dict("records"))
        trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name
        try:
            config = base_config.replace(**overrides).to_dict()
        except ValueError:
            config = {}
        error = (
            None
            if result.error is None
            else f"{type(result.error).__name__}: {result.error}"[:4000]
        )
        records.append(
            TrialRecord(trial_id, overrides, config, history, error, run_ids.get(trial_id))
        )
    return records


def format_table(table: pa.Table, limit: int = 30) -> str:
    """The trials table as aligned text: the best trial (:mod:`study.best`) first, then by final
    knn_top1."""
    params = [
        name for name in table.column_names if name.startswith("param.") and name != "param.seed"
    ]
    columns = ["trial_id", "status", "epochs_run", *params, FINAL_SCORE, BEST_SCORE]
    chosen = (
        table[BEST_COLUMN].to_pylist()
        if BEST_COLUMN in table.column_names
        else [False] * table.num_rows
    )
    rows = [
        {**row, BEST_COLUMN: best} for row, best in zip(table.select(columns).to_pylist(), chosen)
    ]
    rows.sort(
        key=lambda row: (
            not row[BEST_COLUMN],
            -(row[FINAL_SCORE] if row[FINAL_SCORE] is not None else -1),
        )
    )
    headers = [name.removeprefix("param.views.params.").removeprefix("param.") for name in columns]

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}"
        return "-" if value is None else str(value)

    cells = [[cell(row[name]) for name in columns] for row in rows[:limit]]
    widths = [
        max(len(header), *(len(row[i]) for row in cells)) if cells else len(header)
        for i, header in enumerate(headers)
    ]
    lines = ["  ".join(header.ljust(width) for header, width in zip(headers, widths))]
    lines += ["  ".join(value.ljust(width) for value, width in zip(row, widths)) for row in cells]
    return "\n".join(lines)
