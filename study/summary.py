"""What a sweep found, once Tune is done: its Parquet tables, its best trial (:mod:`study.best`)
and the parent run's summary (trial counts by outcome, the best trial's tags, the early-stopping
check), logged through the outbox so that the tables are written whether MLflow answers or not."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from study.best import BestTrial, best_trial
from study.early_stopping import check_early_stopping, rung_tag, summary_metrics
from study.outbox import Outbox, or_else
from study.results import (
    TrialRecord,
    format_table,
    has_gap,
    records_from_results,
    with_logged_epochs,
    write_tables,
)
from study.sweep import Sweep
from study.tracking import Tracking, logged_epochs
from study.vocabulary import (
    BEST_OVERRIDES_TAG,
    BEST_RULE_TAG,
    BEST_SCORE,
    BEST_TRIAL_TAG,
    EARLY_STOPPING_TAG,
    FINAL_SCORE,
    OUTCOMES,
    RESULTS_DIR,
    RUNG_EPOCHS_TAG,
    SUMMARY_FILE,
)


@dataclass(frozen=True)
class Findings:
    """A sweep's exported results and its best trial (None when no trial reported kNN)."""

    trials_path: Path
    epochs_path: Path
    trials: pa.Table
    best: BestTrial | None

    @property
    def best_config(self) -> dict[str, Any] | None:
        row = self.best_row
        return None if row is None else json.loads(row["config_json"])

    @property
    def best_row(self) -> dict[str, Any] | None:
        if self.best is None:
            return None
        return next(row for row in self.trials.to_pylist() if row["trial_id"] == self.best.trial_id)


def complete_records(records: list[TrialRecord], tracking: Tracking) -> list[TrialRecord]:
    """Fill epochs Tune lost in a restore (reported before the kill, after its last saved state)
    from the trials' MLflow runs, the durable record of every reported epoch."""
    client = tracking.client()
    return [
        with_logged_epochs(record, logged_epochs(client, record.run_id))
        if record.run_id and has_gap(record.history)
        else record
        for record in records
    ]


def export_results(result_grid: Any, sweep: Sweep, run_ids: dict[str, str]) -> Findings:
    """Write the sweep's Parquet tables from a Tune ``ResultGrid``."""
    records = records_from_results(result_grid, sweep.plan.base_config, run_ids)
    records = or_else(
        lambda: complete_records(records, sweep.tracking), records, "epochs Tune lost in a restore"
    )
    trials_path, epochs_path = write_tables(records, sweep.plan.epochs, sweep.results)
    trials = pq.read_table(trials_path)
    best = best_trial(trials.select(["trial_id", "status", FINAL_SCORE, BEST_SCORE]).to_pylist())
    return Findings(trials_path, epochs_path, trials, best)


def summarise(result_grid: Any, sweep: Sweep, outbox: Outbox) -> Findings:
    """Export the results and log the summary to the sweep's parent run (through the outbox);
    :mod:`study.lifecycle` closes the runs."""
    outbox.flush(force=True)
    run_ids = or_else(sweep.tracking.trial_run_ids, dict(outbox.writer.runs), "the trials' run ids")
    findings = export_results(result_grid, sweep, run_ids)
    outbox.submit(
        "artifacts",
        paths=[str(findings.trials_path), str(findings.epochs_path)],
        artifact_path=RESULTS_DIR,
    )
    statuses = findings.trials["status"].to_pylist()
    summary: dict[str, float] = {
        "trials": findings.trials.num_rows,
        **{f"trials_{outcome.lower()}": statuses.count(outcome) for outcome in OUTCOMES},
    }
    if findings.best is not None:
        summary[BEST_SCORE] = findings.best.knn_top1
        row = findings.best_row
        overrides = {
            key.removeprefix("param."): value
            for key, value in row.items()
            if key.startswith("param.") and value is not None
        }
        outbox.submit(
            "log",
            tags={
                BEST_TRIAL_TAG: findings.best.trial_id,
                BEST_OVERRIDES_TAG: json.dumps(overrides),
                BEST_RULE_TAG: findings.best.rule,
            },
        )
    summary.update(early_stopping_summary(findings.trials, findings.epochs_path, sweep, outbox))
    outbox.submit("log", metrics=summary, timestamp=int(time.time() * 1000))
    summary_path = sweep.results / SUMMARY_FILE
    summary_path.write_text(format_table(findings.trials) + "\n")
    outbox.submit("artifacts", paths=[str(summary_path)], artifact_path=RESULTS_DIR)
    return findings


def early_stopping_summary(
    trials: pa.Table, epochs_path: Path, sweep: Sweep, outbox: Outbox
) -> dict[str, float]:
    """The parent run's rank correlation of the rungs' scores with the final ones (tagged with the
    rung epochs and whether ASHA was on); its metrics go with the sweep's summary."""
    study_plan = sweep.plan
    check = check_early_stopping(
        trials.to_pandas(),
        pq.read_table(epochs_path).to_pandas(),
        study_plan.asha,
        study_plan.early_stopping,
    )
    outbox.submit(
        "log",
        tags={RUNG_EPOCHS_TAG: rung_tag(check), EARLY_STOPPING_TAG: "asha" if check.on else "off"},
    )
    return summary_metrics(check)
