"""Run, resume, list and export sweeps: Ray Tune over Ray Train trials, searched by Optuna,
stopped early by ASHA (searches by default; a grid runs every trial to the last epoch unless
``early_stopping`` is on), tracked in MLflow and exported to Parquet. The checks made before Ray
starts are :mod:`study.prepare`'s, the Tuner is :mod:`study.tuner`'s."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import ray
from mlflow.entities import RunStatus
from ray import tune

from study.baselines import ensure_baselines
from study.cluster import check_cluster, cluster_address, connect
from study.config import StudyConfig, StudyPlan, plan
from study.early_stopping import check_early_stopping, rung_tag, summary_metrics
from study.layout import (
    EARLY_STOPPING_TAG,
    RESULTS_DIR,
    RUNG_EPOCHS_TAG,
    RUNNING,
    STATE_FILE,
    driver_alive,
    read_state,
    this_driver,
    write_state,
)
from study.outbox import Outbox, or_else
from study.prepare import prepare_study, set_aside
from study.results import (
    STATUSES,
    TRIALS_FILE,
    TrialRecord,
    fill_run_ids,
    format_table,
    has_gap,
    records_from_results,
    with_logged_epochs,
    write_tables,
)
from study.storage import SweepStorage
from study.tracking import Tracking, check_tracking_store, close_open_children, logged_epochs, start_sweep
from study.tuner import build_tuner, check_gpus, pushed, trainable
from trainables.baselines import Baselines
from trainables.validation import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyResult:
    name: str
    directory: Path
    trials_path: Path
    epochs_path: Path
    trials: pa.Table
    best_config: dict[str, Any] | None
    best_knn_top1: float | None
    tracking: Tracking
    baselines: Baselines = Baselines()

    def ui_command(self) -> str:
        return f"study ui --tracking-uri {self.tracking.tracking_uri} --port 5000"


def complete_records(records: list[TrialRecord], tracking: Tracking) -> list[TrialRecord]:
    """Fill epochs Tune lost in a restore (reported before the kill, after its last saved state)
    from the trials' MLflow runs, the durable record of every reported epoch."""
    client = tracking.client()
    return [
        with_logged_epochs(record, logged_epochs(client, record.run_id)) if record.run_id and has_gap(record.history) else record
        for record in records
    ]


def _finish(result_grid: Any, study_plan: StudyPlan, directory: Path, tracking: Tracking, outbox: Outbox) -> StudyResult:
    """Export the ResultGrid to Parquet and log the results to the sweep's MLflow run (through the
    outbox: the Parquet tables are written whether MLflow answers or not); :func:`_run` closes the runs."""
    outbox.flush(force=True)
    run_ids = or_else(tracking.trial_run_ids, dict(outbox.writer.runs), "the trials' run ids")
    records = records_from_results(result_grid, study_plan.base_config, run_ids)
    records = or_else(lambda: complete_records(records, tracking), records, "epochs Tune lost in a restore")
    trials_path, epochs_path = write_tables(records, study_plan.epochs, directory / RESULTS_DIR)
    trials = pq.read_table(trials_path)
    best = max(
        (row for row in trials.to_pylist() if row["best_knn_top1"] is not None),
        key=lambda row: row["best_knn_top1"],
        default=None,
    )
    outbox.submit("artifacts", paths=[str(trials_path), str(epochs_path)], artifact_path=RESULTS_DIR)
    summary = {
        "trials": trials.num_rows,
        **{f"trials_{status.lower()}": sum(1 for s in trials["status"].to_pylist() if s == status) for status in STATUSES},
    }
    best_config = json.loads(best["config_json"]) if best else None
    if best is not None:
        summary["best_knn_top1"] = best["best_knn_top1"]
        overrides = {key.removeprefix("param."): value for key, value in best.items() if key.startswith("param.") and value is not None}
        outbox.submit("log", tags={"study.best_trial": best["trial_id"], "study.best_overrides": json.dumps(overrides)})
    summary.update(early_stopping_summary(trials, epochs_path, study_plan, outbox))
    outbox.submit("log", metrics=summary, timestamp=int(time.time() * 1000))
    summary_path = directory / RESULTS_DIR / "summary.txt"
    summary_path.write_text(format_table(trials) + "\n")
    outbox.submit("artifacts", paths=[str(summary_path)], artifact_path=RESULTS_DIR)
    return StudyResult(
        study_plan.name, directory, trials_path, epochs_path, trials, best_config,
        best["best_knn_top1"] if best else None, tracking,
    )


def early_stopping_summary(trials: pa.Table, epochs_path: Path, study_plan: StudyPlan, outbox: Outbox) -> dict[str, float]:
    """The parent run's rank correlation of the rungs' scores with the final ones (tagged with the
    rung epochs and whether ASHA was on); its metrics go with the sweep's summary."""
    check = check_early_stopping(trials.to_pandas(), pq.read_table(epochs_path).to_pandas(), study_plan.asha, study_plan.early_stopping)
    outbox.submit("log", tags={RUNG_EPOCHS_TAG: rung_tag(check), EARLY_STOPPING_TAG: "asha" if check.on else "off"})
    return summary_metrics(check)


def _run(tuner_factory, study_plan: StudyPlan, storage: SweepStorage, tracking: Tracking, state: dict[str, Any], started_ray: bool) -> StudyResult:
    status = RunStatus.to_string(RunStatus.FAILED)
    directory = storage.directory(study_plan.name)
    outbox = Outbox(tracking, directory)
    try:
        state.update(state=RUNNING, driver=this_driver())
        write_state(directory, state)
        baselines = ensure_baselines(study_plan, StudyConfig.from_dict(state["config"]), directory, outbox, state)
        write_state(directory, state)
        storage.push(study_plan.name)
        result_grid = tuner_factory(outbox).fit()
        result = dataclasses.replace(_finish(result_grid, study_plan, directory, tracking, outbox), baselines=baselines)
        status = RunStatus.to_string(RunStatus.FINISHED)
        state.update(state="finished", best_knn_top1=result.best_knn_top1, trials=result.trials.num_rows)
        return result
    except KeyboardInterrupt:
        status = RunStatus.to_string(RunStatus.KILLED)
        state["state"] = "interrupted"
        raise
    except BaseException:
        state["state"] = "failed"
        raise
    finally:
        outbox.submit("close_open_children", status=RunStatus.to_string(RunStatus.KILLED))
        outbox.submit("close", status=status, keep_finished=False)
        state["pending_tracking_writes"] = len(outbox.pending)
        write_state(directory, state)
        pushed(storage, study_plan.name)
        if state["pending_tracking_writes"]:
            logger.warning(
                "MLflow did not answer: %d tracking writes are kept in %s (the Parquet results are complete); "
                "run `study sync %s` once it is back", state["pending_tracking_writes"], outbox.path, study_plan.name,
            )
        if started_ray:
            ray.shutdown()


def run_study(config: StudyConfig) -> StudyResult:
    """Run a sweep. Everything is validated before Ray starts; an existing name is refused,
    resumed or overwritten as ``config.if_exists`` says."""
    prepared = prepare_study(config)
    config, study_plan, storage, directory, tracking_uri, local = (
        prepared.config, prepared.plan, prepared.storage, prepared.directory, prepared.tracking_uri, prepared.local,
    )
    if prepared.exists and config.if_exists == "resume":
        return resume_study(study_plan.name, config.storage, config.address)
    if directory.exists():  # overwritten, or a URI's stale mirror: kept aside
        set_aside(directory)
    started_ray = connect(config.address)
    try:
        if not local:
            check_cluster(storage.shared_folder, study_plan.base_config.data.root, tracking_uri, study_plan.name)
            config = check_gpus(config, study_plan, ray.cluster_resources().get("GPU", 0))
        directory.mkdir(parents=True)
        tracking = start_sweep(tracking_uri, study_plan.name, study_plan.name, {
            **config.to_dict(), "mode": study_plan.mode, "num_trials": study_plan.num_samples, "epochs": study_plan.epochs,
            "early_stopping": study_plan.early_stopping,
        })
    except BaseException:
        if started_ray:
            ray.shutdown()
        raise
    state = {
        "name": study_plan.name,
        "config": {**config.to_dict(), "name": study_plan.name, "tracking_uri": tracking_uri},
        "tracking": {"experiment_id": tracking.experiment_id, "parent_run_id": tracking.parent_run_id},
        "mode": study_plan.mode,
        "epochs": study_plan.epochs,
        "early_stopping": study_plan.early_stopping,
        "asha": study_plan.asha.to_dict(),
        "num_trials": study_plan.num_samples,
        "description": study_plan.description,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    return _run(lambda outbox: build_tuner(study_plan, config, storage, tracking, outbox), study_plan, storage, tracking, state, started_ray)


def _stored(name: str, storage: str | Path) -> tuple[SweepStorage, Path, dict[str, Any], StudyConfig, StudyPlan, Tracking]:
    """A stored sweep (pulled into this machine's mirror first, for object storage)."""
    location = SweepStorage(str(storage))
    directory = location.pull(name)
    state = read_state(directory)
    config = StudyConfig.from_dict(state["config"])
    tracking = Tracking(config.tracking_uri, state["tracking"]["experiment_id"], state["tracking"]["parent_run_id"], name)
    return location, directory, state, config, plan(config), tracking


def resume_study(name: str, storage: str | Path = "runs", address: str | None = None) -> StudyResult:
    """Finish an interrupted sweep with ``Tuner.restore``: finished trials are kept, unfinished
    ones continue from their checkpoints and the searcher's state is restored. ``address``
    (else ``RAY_ADDRESS``, else the sweep's own) is the cluster to finish it on."""
    location, directory, state, config, study_plan, tracking = _stored(name, storage)
    if state.get("state") == RUNNING and driver_alive(state.get("driver")):
        raise ConfigError("name", name, "a sweep that is not running (its driver is alive)")
    check_tracking_store(tracking.tracking_uri)
    if repair_study(directory):
        state = read_state(directory)
    started_ray = connect(cluster_address(address) or config.address)
    try:
        check_cluster(location.shared_folder, study_plan.base_config.data.root, tracking.tracking_uri, name)
    except BaseException:
        if started_ray:
            ray.shutdown()
        raise
    tracking.client().update_run(tracking.parent_run_id, status="RUNNING")

    def restore(outbox: Outbox) -> tune.Tuner:
        # the restored Tuner keeps its pickled callback, whose outbox shares this one's journal
        return tune.Tuner.restore(
            location.remote(name), trainable=trainable(study_plan, config, location, tracking),
            resume_unfinished=True, resume_errored=True,
        )

    return _run(restore, study_plan, location, tracking, state, started_ray)


def sync_study(name: str, storage: str | Path = "runs") -> int:
    """Replay the tracking writes a sweep kept while MLflow did not answer; returns how many
    are still kept (0 once MLflow has them all)."""
    location, directory, state, _, _, tracking = _stored(name, storage)
    check_tracking_store(tracking.tracking_uri)
    outbox = Outbox(tracking, directory)
    outbox.flush(force=True)
    state["pending_tracking_writes"] = len(outbox.pending)
    write_state(directory, state)
    trials_path = directory / RESULTS_DIR / TRIALS_FILE
    if not state["pending_tracking_writes"] and trials_path.is_file():
        fill_run_ids(trials_path, tracking.trial_run_ids())
    location.push(name)
    return state["pending_tracking_writes"]


def export_study(name: str, storage: str | Path = "runs") -> tuple[Path, Path]:
    """Rewrite a sweep's Parquet tables from its Tune experiment state."""
    location, directory, _, config, study_plan, tracking = _stored(name, storage)
    readable = trainable(study_plan, config, location, tracking, training=False)
    result_grid = tune.Tuner.restore(location.remote(name), trainable=readable).get_results()
    records = complete_records(records_from_results(result_grid, study_plan.base_config, tracking.trial_run_ids()), tracking)
    paths = write_tables(records, study_plan.epochs, directory / RESULTS_DIR)
    location.push(name)
    return paths


def repair_study(directory: Path) -> int:
    """Close the MLflow runs of a sweep whose driver died (hard kill, lost node) while it ran:
    children left RUNNING and the parent become KILLED, and the sweep is marked interrupted
    (``study resume`` finishes it). A sweep whose driver is alive is left alone. Returns the
    number of runs closed."""
    state = read_state(directory)
    if state.get("state") != RUNNING or driver_alive(state.get("driver")):
        return 0
    config = state["config"]
    tracking = Tracking(config["tracking_uri"], state["tracking"]["experiment_id"], state["tracking"]["parent_run_id"], state["name"])
    killed = RunStatus.to_string(RunStatus.KILLED)
    closed = close_open_children(tracking, killed)
    client = tracking.client()
    if client.get_run(tracking.parent_run_id).info.status == "RUNNING":
        client.set_terminated(tracking.parent_run_id, killed)
        closed += 1
    state["state"] = "interrupted"
    write_state(directory, state)
    return closed


def list_studies(storage: str | Path = "runs", repair: bool = False) -> list[dict[str, Any]]:
    location = SweepStorage(str(storage))
    rows = []
    for name in location.names():
        path = location.pull(name) / STATE_FILE
        repaired = repair_study(path.parent) if repair else 0
        if repaired:
            location.push(name)
        state = json.loads(path.read_text())
        trials_path = path.parent / RESULTS_DIR / TRIALS_FILE
        rows.append({
            "name": state["name"],
            "state": state.get("state", "?"),
            "mode": state.get("mode", "?"),
            "trials": state.get("trials"),
            "best_knn_top1": state.get("best_knn_top1"),
            "created": state.get("created"),
            "results": str(trials_path) if trials_path.is_file() else None,
            "repaired": repaired,
            "pending_tracking_writes": state.get("pending_tracking_writes", 0),
        })
    return rows
