"""A sweep's trials as tidy tables, read from its Parquet export or from its MLflow runs.

Both sources give the same :class:`SweepData`: ``trials`` has one row per trial (the full trial
config as dotted columns such as ``views.params.overlap`` or ``margin.mode``, plus ``trial_id``,
``run_id``, ``status``, ``epochs_run``, ``final_knn_top1``, ``best_knn_top1`` and ``dataset``, a
label of the training and kNN datasets), and ``epochs`` has one row per trial per epoch. The
figures in :mod:`dashboards.figures` take only these tables, so they draw the same pictures from
either source. Status is ``FINISHED`` (ran every epoch), ``STOPPED`` (by ASHA), ``FAILED``, or
``DIVERGED`` / ``COLLAPSED`` (stopped itself, :mod:`trainables.health`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import yaml

from study.state import SweepState
from study.sweep import Sweep
from study.tracking import Tracking, logged_epochs
from study.vocabulary import (
    BASELINES_FILE,
    BEST_SCORE,
    DEFAULT_STORAGE,
    EPOCH,
    EPOCH_COLUMNS,
    FINAL_SCORE,
    OPTUNA_FILE,
    PIXELS_METRIC,
    SCORE,
    STOPPED_BY_TAG,
    TRIAL_TAG,
    UNTRAINED_METRIC,
    Outcome,
)
from trainables.baselines import PIXELS, UNTRAINED, Baselines, BaselineScore
from trainables.config import flatten
from trainables.metrics import VIEW_STATS_FILE
from trainables.validation import ConfigError, check_choice

SOURCES = ("parquet", "mlflow")
PROGRESS_BAR_VARIABLE = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


@dataclass(frozen=True)
class SweepData:
    """What the figures and the report read. ``directory`` and ``tracking_uri`` locate the
    sweep's Optuna study and MLflow runs when they are at hand."""

    name: str
    trials: pd.DataFrame
    epochs: pd.DataFrame
    max_epochs: int
    source: str
    state: SweepState | None = None
    """The sweep's record (None for tables built without one)."""
    directory: Path | None = None
    tracking_uri: str | None = None
    baselines: Baselines = Baselines()
    """The untrained encoder's and the raw pixels' kNN scores (none for sweeps run before them)."""

    @property
    def optuna_storage(self) -> str | None:
        path = None if self.directory is None else self.directory / OPTUNA_FILE
        return f"sqlite:///{path}" if path is not None and path.is_file() else None

    @property
    def parent_run_id(self) -> str | None:
        return None if self.state is None else self.state.parent_run_id


def dataset_label(train: str, evaluation: str | None) -> str:
    """``cifar10``, or ``coco → kNN cifar10`` when the kNN set is not the training set."""
    return train if evaluation in (None, "", train) else f"{train} → kNN {evaluation}"


def _with_derived_columns(trials: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    trials = trials.copy()
    trials["dataset"] = [
        dataset_label(train, evaluation)
        for train, evaluation in zip(
            trials["data.dataset"], trials.get("data.eval_dataset", [None] * len(trials))
        )
    ]
    scores = epochs.dropna(subset=[SCORE]).sort_values(EPOCH).groupby("trial_id")[SCORE]
    trials[FINAL_SCORE] = trials["trial_id"].map(scores.last())
    trials[BEST_SCORE] = trials["trial_id"].map(scores.max())
    trials["epochs_run"] = (
        trials["trial_id"].map(epochs.groupby("trial_id")[EPOCH].max()).fillna(0).astype(int)
    )
    return trials


def from_tables(
    name: str,
    trials: pd.DataFrame,
    epochs: pd.DataFrame,
    max_epochs: int,
    source: str,
    **context: Any,
) -> SweepData:
    """A SweepData from already tidy tables (the loaders below end here)."""
    return SweepData(
        name, _with_derived_columns(trials, epochs), epochs, max_epochs, source, **context
    )


def _config_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        [flatten(json.loads(text)) for text in frame["config_json"]], index=frame.index
    )


def read_parquet(sweep: Sweep, max_epochs: int) -> SweepData:
    """The sweep's ``results/trials.parquet`` and ``results/epochs.parquet``."""
    name, results = sweep.name, sweep.results
    paths = [sweep.trials_path, sweep.epochs_path]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise ConfigError(
            "source",
            "parquet",
            f"a sweep with its Parquet export; missing {missing} (run `study export {name}`)",
        )
    exported, epochs = (pd.read_parquet(path) for path in paths)
    trials = pd.concat(
        [
            exported[["trial_id", "status", "mlflow_run_id"]].rename(
                columns={"mlflow_run_id": "run_id"}
            ),
            _config_rows(exported),
        ],
        axis=1,
    )
    baselines_path = results / BASELINES_FILE
    baselines = (
        Baselines.from_rows(pq.read_table(baselines_path).to_pylist())
        if baselines_path.is_file()
        else Baselines()
    )
    return from_tables(
        name,
        trials,
        epochs,
        max_epochs,
        "parquet",
        state=sweep.state,
        directory=sweep.directory,
        tracking_uri=sweep.state.tracking_uri,
        baselines=baselines,
    )


def parse_param(text: str) -> Any:
    """An MLflow param string back to the value ``str()`` made it from (None, a bool, a number,
    a list or mapping, else the string itself)."""
    if text in ("None", "True", "False"):
        return {"None": None, "True": True, "False": False}[text]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text.startswith(("[", "{", "(")):
        try:
            return yaml.safe_load(text.replace("(", "[").replace(")", "]"))
        except yaml.YAMLError:
            return text
    return text


def read_mlflow(sweep: Sweep, max_epochs: int) -> SweepData:
    """The parent run's children: params as the config, metric histories as the epochs table."""
    tracking: Tracking = sweep.tracking
    client = tracking.client()
    rows, epoch_rows = [], []
    for run in tracking.child_runs():
        trial_id = run.data.tags.get(TRIAL_TAG, run.info.run_id)
        config = {key: parse_param(value) for key, value in run.data.params.items()}
        status = Outcome.of_run(run.info.status, run.data.tags.get(STOPPED_BY_TAG))
        rows.append(
            {"trial_id": trial_id, "status": str(status), "run_id": run.info.run_id, **config}
        )
        logged = logged_epochs(client, run.info.run_id)
        epoch_rows.extend(
            {"trial_id": trial_id, EPOCH: epoch, **logged[epoch]} for epoch in sorted(logged)
        )
    trials = pd.DataFrame(rows)
    epochs = pd.DataFrame(epoch_rows, columns=["trial_id", *EPOCH_COLUMNS])
    if trials.empty:
        raise ConfigError(
            "source",
            "mlflow",
            f"a parent run with trial runs; run {tracking.parent_run_id} in "
            f"{tracking.tracking_uri} has none",
        )
    baselines = logged_baselines(client, tracking.parent_run_id, trials.iloc[0])
    return from_tables(
        sweep.name,
        trials,
        epochs,
        max_epochs,
        "mlflow",
        state=sweep.state,
        directory=sweep.directory,
        tracking_uri=tracking.tracking_uri,
        baselines=baselines,
    )


def logged_baselines(client: Any, parent_run_id: str, trial: pd.Series) -> Baselines:
    """The baselines the parent run logged (top-1 only; the untrained encoder at step = seed),
    with the evaluation setting of the sweep's trials (``trial``: one of them)."""
    setting = {
        "eval_dataset": trial.get("data.eval_dataset"),
        "k": _integer(trial.get("knn.k")),
        "size": _integer(trial.get("views.size")),
        "eval_limit": _integer(trial.get("data.eval_limit")),
        "knn_top5": None,
    }
    scores = [
        BaselineScore(UNTRAINED, int(point.step), point.value, **setting)
        for point in client.get_metric_history(parent_run_id, UNTRAINED_METRIC)
    ]
    scores += [
        BaselineScore(PIXELS, None, point.value, **setting)
        for point in client.get_metric_history(parent_run_id, PIXELS_METRIC)
    ]
    return Baselines(tuple(scores))


def _integer(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def load_sweep(
    name: str, storage: str | Path = DEFAULT_STORAGE, source: str = "parquet"
) -> SweepData:
    """A stored sweep (``storage/name``) from its Parquet export or its MLflow runs."""
    check_choice("source", source, SOURCES)
    sweep = Sweep.open(name, storage)
    max_epochs = sweep.state.epochs or sweep.plan.epochs
    return (
        read_parquet(sweep, max_epochs) if source == "parquet" else read_mlflow(sweep, max_epochs)
    )


def view_stats(sweep: SweepData) -> dict[str, dict[str, Any]]:
    """Per trial, the realised-view histograms its run logged (``view_stats.json``); trials
    without the artifact (failed before a checkpoint) are left out."""
    if sweep.tracking_uri is None:
        return {}
    from mlflow.tracking import MlflowClient

    client = MlflowClient(sweep.tracking_uri)
    stats = {}
    with tempfile.TemporaryDirectory() as scratch, _without_progress_bars():
        for trial_id, run_id in zip(sweep.trials["trial_id"], sweep.trials["run_id"]):
            if not isinstance(run_id, str) or VIEW_STATS_FILE not in {
                item.path for item in client.list_artifacts(run_id)
            }:
                continue
            path = client.download_artifacts(run_id, VIEW_STATS_FILE, str(Path(scratch) / trial_id))
            stats[trial_id] = json.loads(Path(path).read_text())
    return stats


def _tagged(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    return frame.assign(sweep=name, trial_id=name + "/" + frame["trial_id"].astype(str))


@contextmanager
def _without_progress_bars() -> Iterator[None]:
    """MLflow draws a progress bar per downloaded file; a report downloads one per trial."""
    previous = os.environ.get(PROGRESS_BAR_VARIABLE)
    os.environ[PROGRESS_BAR_VARIABLE] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(PROGRESS_BAR_VARIABLE, None)
        else:
            os.environ[PROGRESS_BAR_VARIABLE] = previous


def combine(sweeps: list[SweepData]) -> SweepData:
    """Several sweeps' trials as one (a figure over datasets or families may span sweeps); the
    first sweep gives the name and context."""
    first = sweeps[0]
    if len(sweeps) == 1:
        return first
    trials = pd.concat([_tagged(sweep.trials, sweep.name) for sweep in sweeps], ignore_index=True)
    epochs = pd.concat([_tagged(sweep.epochs, sweep.name) for sweep in sweeps], ignore_index=True)
    return SweepData(
        first.name,
        trials,
        epochs,
        max(sweep.max_epochs for sweep in sweeps),
        first.source,
        first.state,
        first.directory,
        first.tracking_uri,
        Baselines.combine(sweep.baselines for sweep in sweeps),
    )
