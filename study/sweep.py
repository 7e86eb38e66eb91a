"""Run, resume, list and export sweeps: Ray Tune over Ray Train trials, searched by Optuna,
stopped early by ASHA (searches by default; a grid runs every trial to the last epoch unless
``early_stopping`` is on), tracked in MLflow and exported to Parquet."""

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
from ray.tune.schedulers import ASHAScheduler
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from study.baselines import ensure_baselines
from study.cluster import check_cluster, cluster_address, connect
from study.config import METRIC, MODE, StudyConfig, StudyPlan, plan, with_gpus
from study.layout import (
    EARLY_STOPPING_TAG,
    RESULTS_DIR,
    RUNG_EPOCHS_TAG,
    RUNNING,
    STATE_FILE,
    driver_alive,
    optuna_storage,
    read_state,
    this_driver,
    write_state,
)
from study.outbox import Outbox, or_else
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
from study.search import StudySearch
from study.storage import SweepStorage
from study.tracking import (
    MlflowTrialCallback,
    Tracking,
    check_tracking_store,
    close_open_children,
    logged_epochs,
    resolve_tracking_uri,
    start_sweep,
)
from study.trial import TimelineCallback, TrialContext, run_trial
from trainables.baselines import Baselines
from trainables.ray_trainable import DatasetShare, ScalingSpec, TrainerSpec
from trainables.validation import ConfigError

logger = logging.getLogger(__name__)

TRIAL_DRIVER_MEMORY = 256 * 1024**2


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


def local_gpus() -> int:
    import torch

    return torch.cuda.device_count()


def check_gpus(config: StudyConfig, study_plan: StudyPlan, available: float) -> StudyConfig:
    """``config`` with its GPUs per trial resolved (:func:`~study.config.with_gpus`); a trial asking
    for more GPUs than the cluster has would wait forever: refuse it."""
    config = with_gpus(config, study_plan.base_config, available)
    if config.gpus_per_trial > available:
        raise ConfigError("gpus_per_trial", config.gpus_per_trial, f"at most {available:g}, the GPUs of the cluster")
    return config


def _concurrency(config: StudyConfig) -> int:
    if config.max_concurrent_trials is not None:
        return config.max_concurrent_trials
    cpus_per_trial = config.workers_per_trial * config.cpus_per_worker
    available = ray.cluster_resources().get("CPU", 1)
    by_cpu = int(available // cpus_per_trial) if cpus_per_trial else 1
    if config.gpus_per_trial:
        by_cpu = min(by_cpu, int(ray.cluster_resources().get("GPU", 0) // config.gpus_per_trial) or 1)
    return max(1, by_cpu)


def dataset_share() -> ray.actor.ActorHandle:
    """The sweep's :class:`DatasetShare`, on the driver's node: it lives as long as the sweep,
    whichever worker nodes come and go."""
    if ray.util.client.ray.is_connected():  # Ray Client: this process is no node of the cluster
        return DatasetShare.remote()
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    return DatasetShare.options(scheduling_strategy=here).remote()


def _trainable(study_plan: StudyPlan, config: StudyConfig, storage: SweepStorage, tracking: Tracking, training: bool = True):
    """The trial function with its resources; ``training=False`` (reading results back) starts no actor."""
    spec = TrainerSpec(
        scaling=ScalingSpec(
            num_workers=config.workers_per_trial,
            cpus_per_worker=config.cpus_per_worker,
            gpus_per_worker=(config.gpus_per_trial or 0.0) / config.workers_per_trial,
        ),
        storage_path=storage.remote(study_plan.name, "train"),
        checkpoints_to_keep=config.checkpoints_to_keep,
        max_failures=config.max_failures,
        datasets=dataset_share() if training else None,
    )
    context = TrialContext(base_config=study_plan.base_config.to_dict(), trainer=spec, tracking=tracking)
    return tune.with_resources(tune.with_parameters(run_trial, context=context), {"cpu": 0, "memory": TRIAL_DRIVER_MEMORY})


def scheduler(study_plan: StudyPlan) -> ASHAScheduler | None:
    """ASHA when the plan stops trials early; else None (Tune's FIFO: every trial to the last epoch)."""
    if not study_plan.early_stopping:
        return None
    asha = study_plan.asha
    return ASHAScheduler(time_attr="epoch", grace_period=asha.grace_period, reduction_factor=asha.reduction_factor, max_t=asha.max_t)


def _tuner(study_plan: StudyPlan, config: StudyConfig, storage: SweepStorage, tracking: Tracking, outbox: Outbox) -> tune.Tuner:
    directory = storage.directory(study_plan.name)
    searcher = StudySearch(
        study_plan.define,
        max_epochs=study_plan.epochs,
        metric=METRIC,
        mode=MODE,
        study_name=study_plan.name,
        storage=optuna_storage(directory),
        seed=config.seed,
        points=study_plan.points,
    )
    return tune.Tuner(
        _trainable(study_plan, config, storage, tracking),
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode=MODE,
            search_alg=searcher,
            scheduler=scheduler(study_plan),
            num_samples=study_plan.num_samples,
            max_concurrent_trials=_concurrency(config),
        ),
        run_config=tune.RunConfig(
            name=study_plan.name,
            storage_path=storage.tune_root,
            failure_config=tune.FailureConfig(max_failures=config.max_failures),
            callbacks=[
                MlflowTrialCallback(outbox, study_plan.epochs, study_plan.base_config.to_dict(), storage.location),
                TimelineCallback(),
                PushCallback(storage.location, study_plan.name),
            ],
        ),
    )


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
    from dashboards.early_stopping import check_early_stopping, rung_tag, summary_metrics

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


@dataclass(frozen=True)
class Prepared:
    """A sweep checked against everything knowable before Ray starts."""

    config: StudyConfig
    plan: StudyPlan
    storage: SweepStorage
    directory: Path
    exists: bool
    tracking_uri: str
    local: bool


REPLACED_DIR = ".replaced"


def with_data_root(config: StudyConfig) -> StudyConfig:
    """``config`` with ``data.root`` resolved to an absolute path (trials run in other working
    directories, on other nodes) and checked to hold every split the sweep reads."""
    from trainables.config import BANK_SPLIT, QUERY_SPLIT
    from trainables.data import DATASETS, default_data_root, get_dataset

    data = plan(config).base_config.data
    splits = sorted({(data.dataset, data.train_split), (data.eval_dataset, BANK_SPLIT), (data.eval_dataset, QUERY_SPLIT)})
    on_disk = [(name, split) for name, split in splits if not DATASETS[name].bundled]
    if not on_disk:
        return config
    root = (Path(data.root).expanduser() if data.root else default_data_root()).resolve()
    for name, split in on_disk:
        try:
            get_dataset(name, root, split)
        except FileNotFoundError as error:
            raise ConfigError("data.root", str(root), f"a folder holding {name}'s {split} split ({error})") from error
    return dataclasses.replace(config, overrides={**config.overrides, "data.root": str(root)})


def check_existing(directory: Path, config: StudyConfig, name: str) -> None:
    """A taken sweep name is refused unless the config says to resume or overwrite that sweep;
    neither is allowed while the sweep's driver is alive."""
    if config.if_exists == "overwrite" and SweepStorage(config.storage).is_uri:
        raise ConfigError("if_exists", "overwrite", f"refuse or resume with object storage ({config.storage}): sweep {name} is "
                                                    "kept there; choose another --name")
    if config.if_exists == "refuse":
        raise ConfigError("name", name, f"a new sweep name: {directory} exists (resume it with `study resume {name}` or "
                                        "`study run ... --resume`, or replace it with --overwrite)")
    state = read_state(directory) if (directory / STATE_FILE).is_file() else {}
    if state.get("state") == RUNNING and driver_alive(state.get("driver")):
        raise ConfigError("name", name, f"a sweep that is not running ({directory} is being run by {state['driver']})")
    if config.if_exists == "resume" and not state:
        raise ConfigError("name", name, f"a sweep to resume ({directory} has no {STATE_FILE})")


def set_aside(directory: Path) -> Path:
    """Move an overwritten sweep's directory under ``<storage>/.replaced/`` (never deleted)."""
    target = directory.parent / REPLACED_DIR / f"{directory.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    target.parent.mkdir(exist_ok=True)
    directory.rename(target)
    logger.warning("sweep %s overwritten: its directory is kept as %s (its MLflow runs are kept too)", directory.name, target)
    return target


def prepare_study(config: StudyConfig) -> Prepared:
    """Every check that needs no cluster: the configs, the name, the data, the tracking store,
    and on a local run the GPUs. Raises ConfigError; starts and writes nothing."""
    study_plan = plan(config)
    storage = SweepStorage(config.storage)
    directory = storage.directory(study_plan.name)
    exists = storage.exists(study_plan.name)
    if exists:
        check_existing(storage.pull(study_plan.name), config, study_plan.name)
    tracking_uri = check_tracking_store(resolve_tracking_uri(config.tracking_uri))
    config = with_data_root(config)
    local = not cluster_address(config.address) and not ray.is_initialized()
    if local:
        config = check_gpus(config, study_plan, local_gpus())
    return Prepared(config, plan(config), storage, directory, exists, tracking_uri, local)


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
    return _run(lambda outbox: _tuner(study_plan, config, storage, tracking, outbox), study_plan, storage, tracking, state, started_ray)


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
            location.remote(name), trainable=_trainable(study_plan, config, location, tracking),
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
    trainable = _trainable(study_plan, config, location, tracking, training=False)
    result_grid = tune.Tuner.restore(location.remote(name), trainable=trainable).get_results()
    records = complete_records(records_from_results(result_grid, study_plan.base_config, tracking.trial_run_ids()), tracking)
    paths = write_tables(records, study_plan.epochs, directory / RESULTS_DIR)
    location.push(name)
    return paths


def pushed(storage: SweepStorage, name: str) -> None:
    """Push the driver's files to object storage; a failure is a warning (the mirror keeps them)."""
    try:
        storage.push(name)
    except OSError as error:
        logger.warning("could not copy sweep %s's files to %s (%s): they are kept in %s; the next push retries",
                       name, storage.location, error, storage.directory(name))


class PushCallback(tune.Callback):
    """Pushes the driver's files (study state, Optuna RDB, outbox) to object storage whenever a
    trial ends, so that another machine can resume the sweep from there."""

    def __init__(self, location: str, name: str) -> None:
        self.storage = SweepStorage(location)
        self.name = name

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.storage.is_uri:
            pushed(self.storage, self.name)

    on_trial_error = on_trial_complete


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
