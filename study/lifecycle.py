"""Run and resume sweeps: Ray Tune over Ray Train trials, searched by Optuna, stopped early by
ASHA (searches by default; a grid runs every trial to the last epoch unless ``early_stopping``
is on), tracked in MLflow and exported to Parquet.

The checks made before Ray starts are :mod:`study.prepare`'s, the Tuner is :mod:`study.tuner`'s
and the results are :mod:`study.summary`'s. A sweep's record moves from running to finished,
failed or interrupted (:class:`~study.state.Lifecycle`) here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import ray
from ray import tune

from study.baselines import ensure_baselines
from study.best import BestTrial
from study.cluster import check_cluster, cluster_address, connect
from study.config import StudyConfig
from study.console import configure_console
from study.interrupt import Interruptions, SweepInterrupted
from study.outbox import Outbox, or_else
from study.prepare import Prepared, prepare_study, set_aside
from study.state import Driver, Lifecycle
from study.stored import repair_study
from study.summary import Findings, summarise
from study.sweep import Sweep
from study.tracking import Tracking, check_tracking_store, start_sweep, tag_experiment_kind
from study.trial import ViewGallery
from study.tuner import build_tuner, check_gpus, trainable
from study.ui import DEFAULT_PORT, HOST, experiment_url
from study.vocabulary import (
    DEFAULT_STORAGE,
    INTERRUPT_STOPPER,
    RUN_FAILED,
    RUN_FINISHED,
    RUN_KILLED,
    RUN_RUNNING,
    STATE_TAG,
    STOPPED_BY_TAG,
)
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
    best: BestTrial | None
    best_config: dict[str, Any] | None
    tracking: Tracking
    baselines: Baselines = Baselines()

    @property
    def best_knn_top1(self) -> float | None:
        return None if self.best is None else self.best.knn_top1

    @classmethod
    def of(cls, sweep: Sweep, findings: Findings, baselines: Baselines) -> StudyResult:
        return cls(
            sweep.name,
            sweep.directory,
            findings.trials_path,
            findings.epochs_path,
            findings.trials,
            findings.best,
            findings.best_config,
            sweep.tracking,
            baselines,
        )

    def ui_command(self) -> str:
        return f"study ui --tracking-uri {self.tracking.tracking_uri} --port {DEFAULT_PORT}"

    def ui_page(self) -> str:
        """The sweep's runs in the UI that :meth:`ui_command` serves."""
        return experiment_url(f"http://{HOST}:{DEFAULT_PORT}", self.tracking.experiment_id)


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Connected to ``address`` (else a local Ray started here, and shut down on the way out)."""
    started = connect(address)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def ended_trials(tracking: Tracking, outbox: Outbox) -> int | None:
    """How many of a sweep's trials ended (ran every epoch, were stopped by ASHA, failed), by
    their MLflow runs: a trial an interrupt cuts is still RUNNING (Tune stops it without a
    verdict). None if MLflow does not answer."""
    outbox.flush(force=True)
    return or_else(
        lambda: sum(run.info.status != RUN_RUNNING for run in tracking.child_runs()),
        None,
        "the trials' statuses",
    )


def _run(sweep: Sweep, tuner_factory: Callable[[Outbox], tune.Tuner]) -> StudyResult:
    """Drive a sweep to its end and record how it ended, whatever ends it: finished, failed, or
    interrupted by SIGINT or SIGTERM (:mod:`study.interrupt`; raises :class:`SweepInterrupted`)."""
    with Interruptions().handled() as interruptions:
        return _drive(sweep, tuner_factory, interruptions)


def _drive(
    sweep: Sweep, tuner_factory: Callable[[Outbox], tune.Tuner], interruptions: Interruptions
) -> StudyResult:
    outbox = sweep.outbox()
    lifecycle, status = Lifecycle.FAILED, RUN_FAILED
    try:
        sweep.save(lifecycle=Lifecycle.RUNNING, driver=Driver.this())
        baselines = ensure_baselines(sweep.plan, sweep.state.config, sweep.directory, outbox)
        sweep.save(baselines=baselines.rows())
        sweep.storage.push(sweep.name)
        with interruptions.tuning():
            result_grid = tuner_factory(outbox).fit()
        if interruptions.received is not None:  # Tune stopped gracefully
            raise KeyboardInterrupt
        findings = summarise(result_grid, sweep, outbox)
        lifecycle, status = Lifecycle.FINISHED, RUN_FINISHED
        sweep.save(trials=findings.trials.num_rows, best=findings.best)
        return StudyResult.of(sweep, findings, baselines)
    except KeyboardInterrupt as interrupt:
        lifecycle, status = Lifecycle.INTERRUPTED, RUN_KILLED
        config = sweep.state.config
        raise SweepInterrupted(
            sweep.name,
            interruptions.received,
            ended_trials(sweep.tracking, outbox),
            sweep.plan.num_samples,
            str(config.storage),
            config.address,
        ) from interrupt
    finally:
        outbox.submit(
            "close_open_children",
            status=RUN_KILLED,
            tags={STOPPED_BY_TAG: INTERRUPT_STOPPER} if lifecycle is Lifecycle.INTERRUPTED else {},
        )
        outbox.submit(
            "close", status=status, keep_finished=False, tags={STATE_TAG: lifecycle.value}
        )
        pending = len(outbox.pending)
        sweep.save(lifecycle=lifecycle, pending_tracking_writes=pending)
        sweep.push()
        if pending:
            logger.warning(
                "MLflow did not answer: %d tracking writes are kept in %s "
                "(the Parquet results are complete); "
                "run `study sync %s` once it is back",
                pending,
                outbox.path,
                sweep.name,
            )


def finished_result(name: str, storage: str | Path = DEFAULT_STORAGE) -> StudyResult:
    """What :func:`run_study` returned for the finished sweep ``name``, read back from its
    storage (for a sweep run from the command line, e.g. ``study demo``)."""
    sweep = Sweep.open(name, storage)
    state = sweep.state
    if state.lifecycle is not Lifecycle.FINISHED:
        raise ConfigError("name", name, f"a finished sweep (it is {state.lifecycle.value})")
    findings = Findings(
        sweep.trials_path, sweep.epochs_path, pq.read_table(sweep.trials_path), state.best
    )
    return StudyResult.of(sweep, findings, Baselines.from_rows(state.baselines))


def run_study(config: StudyConfig, view_gallery: ViewGallery | None = None) -> StudyResult:
    """Run a sweep. Everything is validated before Ray starts; an existing name is refused,
    resumed or overwritten as ``config.if_exists`` says. ``view_gallery`` draws each trial's
    view pairs for its MLflow run (the CLI gives :func:`dashboards.gallery.draw_view_pairs`)."""
    return start_study(prepare_study(config), view_gallery)


def start_study(prepared: Prepared, view_gallery: ViewGallery | None = None) -> StudyResult:
    """Run a sweep :func:`~study.prepare.prepare_study` has checked."""
    config, study_plan, storage, directory = (
        prepared.config,
        prepared.plan,
        prepared.storage,
        prepared.directory,
    )
    if prepared.exists and config.if_exists == "resume":
        return resume_study(study_plan.name, config.storage, config.address, view_gallery)
    if directory.exists():  # overwritten, or a URI's stale mirror: kept aside
        set_aside(directory)
    with ray_session(config.address):
        if not prepared.local:
            check_cluster(
                storage.shared_folder,
                study_plan.base_config.data.root,
                prepared.tracking_uri,
                study_plan.name,
            )
            config = check_gpus(config, study_plan, ray.cluster_resources().get("GPU", 0))
        config = dataclasses.replace(
            config, name=study_plan.name, tracking_uri=prepared.tracking_uri
        )
        directory.mkdir(parents=True)
        tracking = start_sweep(
            prepared.tracking_uri,
            study_plan.name,
            study_plan.name,
            {
                **config.to_dict(),
                "mode": study_plan.mode,
                "num_trials": study_plan.num_samples,
                "epochs": study_plan.epochs,
                "early_stopping": study_plan.early_stopping,
            },
        )
        sweep = Sweep.create(storage, config, study_plan, tracking)
        return _run(
            sweep,
            lambda outbox: build_tuner(study_plan, config, storage, tracking, outbox, view_gallery),
        )


def resume_study(
    name: str,
    storage: str | Path = DEFAULT_STORAGE,
    address: str | None = None,
    view_gallery: ViewGallery | None = None,
) -> StudyResult:
    """Finish an interrupted sweep with ``Tuner.restore``: finished trials are kept, unfinished
    ones continue from their checkpoints and the searcher's state is restored. ``address``
    (else ``RAY_ADDRESS``, else the sweep's own) is the cluster to finish it on."""
    sweep = Sweep.open(name, storage)
    if sweep.state.live:
        raise ConfigError("name", name, "a sweep that is not running (its driver is alive)")
    check_tracking_store(sweep.state.tracking_uri)
    if repair_study(sweep):
        sweep.reload()
    config, tracking = sweep.state.config, sweep.tracking
    with ray_session(cluster_address(address) or config.address):
        check_cluster(
            sweep.storage.shared_folder,
            sweep.plan.base_config.data.root,
            tracking.tracking_uri,
            name,
        )
        client = tracking.client()
        client.update_run(tracking.parent_run_id, status=RUN_RUNNING)
        tag_experiment_kind(client, client.get_experiment(tracking.experiment_id))
        configure_console(config.verbose)
        # the restored Tuner keeps its pickled callback, whose outbox shares this one's journal
        return _run(
            sweep,
            lambda outbox: tune.Tuner.restore(
                sweep.storage.remote(name),
                trainable=trainable(
                    sweep.plan, config, sweep.storage, tracking, view_gallery=view_gallery
                ),
                resume_unfinished=True,
                resume_errored=True,
            ),
        )
