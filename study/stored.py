"""The verbs on stored sweeps that start no trial: ``study ls`` (with ``--repair``), ``study sync``
and ``study export``, each a few lines over :class:`~study.sweep.Sweep`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ray import tune

from study.results import fill_run_ids
from study.state import Lifecycle, SweepState
from study.storage import SweepStorage
from study.summary import export_results
from study.sweep import Sweep
from study.tracking import check_tracking_store, close_open_children
from study.tuner import trainable
from study.vocabulary import DEFAULT_STORAGE, RUN_KILLED


def repair_study(sweep: Sweep) -> int:
    """Close the MLflow runs of a sweep whose driver died (hard kill, lost node) while it ran:
    children left RUNNING and the parent become KILLED, and the sweep is marked interrupted
    (``study resume`` finishes it). A sweep whose driver is alive is left alone. Returns the
    number of runs closed."""
    if sweep.state.lifecycle is not Lifecycle.RUNNING or sweep.state.live:
        return 0
    tracking = sweep.tracking
    closed = close_open_children(tracking, RUN_KILLED)
    client = tracking.client()
    if client.get_run(tracking.parent_run_id).info.status == "RUNNING":
        client.set_terminated(tracking.parent_run_id, RUN_KILLED)
        closed += 1
    sweep.save(lifecycle=Lifecycle.INTERRUPTED)
    return closed


@dataclass(frozen=True)
class Listing:
    """One line of ``study ls``."""

    state: SweepState
    results: Path | None
    """The trials table, once exported."""
    repaired: int = 0
    """Runs ``--repair`` closed."""


def list_studies(storage: str | Path = DEFAULT_STORAGE, repair: bool = False) -> list[Listing]:
    location = SweepStorage(str(storage))
    listings = []
    for name in location.names():
        sweep = Sweep.open(name, location.location)
        repaired = repair_study(sweep) if repair else 0
        if repaired:
            location.push(name)
        listings.append(
            Listing(
                sweep.state, sweep.trials_path if sweep.trials_path.is_file() else None, repaired
            )
        )
    return listings


def sync_study(name: str, storage: str | Path = DEFAULT_STORAGE) -> int:
    """Replay the tracking writes a sweep kept while MLflow did not answer; returns how many
    are still kept (0 once MLflow has them all)."""
    sweep = Sweep.open(name, storage)
    check_tracking_store(sweep.state.tracking_uri)
    outbox = sweep.outbox()
    outbox.flush(force=True)
    pending = sweep.save(pending_tracking_writes=len(outbox.pending)).pending_tracking_writes
    if not pending and sweep.trials_path.is_file():
        fill_run_ids(sweep.trials_path, sweep.tracking.trial_run_ids())
    sweep.storage.push(name)
    return pending


def export_study(name: str, storage: str | Path = DEFAULT_STORAGE) -> tuple[Path, Path]:
    """Rewrite a sweep's Parquet tables (and the best trial in its record) from its Tune
    experiment state."""
    sweep = Sweep.open(name, storage)
    readable = trainable(
        sweep.plan, sweep.state.config, sweep.storage, sweep.tracking, training=False
    )
    result_grid = tune.Tuner.restore(sweep.storage.remote(name), trainable=readable).get_results()
    findings = export_results(result_grid, sweep, sweep.tracking.trial_run_ids())
    sweep.save(trials=findings.trials.num_rows, best=findings.best)
    sweep.storage.push(name)
    return findings.trials_path, findings.epochs_path
