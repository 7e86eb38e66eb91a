"""Where a sweep keeps its files and how its MLflow runs are tagged, importable without Ray.

``STORAGE/NAME/`` holds ``study.json`` (the StudyConfig, the MLflow ids and the sweep's state),
``optuna.db`` (the searcher's study), Ray Tune's experiment state and trial folders, ``train/``
(Ray Train runs and checkpoints), ``results/`` (the Parquet tables) and ``report/``.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from trainables.validation import ConfigError

STATE_FILE = "study.json"
RESULTS_DIR = "results"
REPORT_DIR = "report"
OPTUNA_FILE = "optuna.db"
REPLACED_DIR = ".replaced"  # under the storage root: the directories of overwritten sweeps, never deleted
BASELINES_FILE = "baselines.parquet"  # in RESULTS_DIR: trainables.baselines.BaselineScore rows

# The parent run's baseline metrics: the untrained encoder once per seed (MLflow step = seed) and
# their mean, and the raw pixels (see trainables.baselines).
UNTRAINED_METRIC = "untrained_knn_top1"
UNTRAINED_MEAN_METRIC = "untrained_knn_top1_mean"
PIXELS_METRIC = "pixels_knn_top1"

# MLflow tags of a sweep's runs: the parent has role "sweep", each child role "trial" and the trial id.
TRIAL_TAG = "study.trial_id"
STUDY_TAG = "study.name"
ROLE_TAG = "study.role"
STOPPED_BY_TAG = "study.stopped_by"  # asha, diverged or collapsed
STOP_REASON_TAG = "study.stop_reason"
ERROR_TAG = "study.error"
NODES_TAG = "study.nodes"  # the Ray node IDs a trial's workers ran on

# The parent run's early-stopping check (dashboards.early_stopping): Spearman's rho between the
# trials' knn_top1 at ASHA's grace period and their final knn_top1, over the trials that ran every
# epoch; the rung epochs checked (ASHA's, or for a grid the ones it would use); ASHA on or off.
RANK_CORRELATION_METRIC = "rank_correlation_at_grace"
RANK_CORRELATION_TRIALS_METRIC = "rank_correlation_trials"
RUNG_EPOCHS_TAG = "study.rung_epochs"
EARLY_STOPPING_TAG = "study.early_stopping"  # asha or off


def sweep_directory(storage: str | Path, name: str) -> Path:
    """Sweep ``name``'s folder on this machine (for object storage, its local mirror:
    :mod:`study.storage`)."""
    from study.storage import SweepStorage

    return SweepStorage(str(storage)).directory(name)


def write_state(directory: Path, state: dict[str, Any]) -> None:
    partial = directory / (STATE_FILE + ".partial")
    partial.write_text(json.dumps(state, indent=2, default=str))
    partial.replace(directory / STATE_FILE)


def read_state(directory: Path) -> dict[str, Any]:
    path = directory / STATE_FILE
    if not path.is_file():
        raise ConfigError("name", directory.name, f"a sweep under {directory.parent} (no {STATE_FILE} in {directory})")
    return json.loads(path.read_text())


RUNNING = "running"


def this_driver() -> dict[str, Any]:
    """Who runs a sweep, recorded in its state so that a dead driver can be told from a live one."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def driver_alive(driver: dict[str, Any] | None) -> bool:
    """Whether a sweep's recorded driver still runs. A driver on another host is assumed alive:
    only its own host can tell."""
    if not driver:
        return False
    if driver.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(driver["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def optuna_storage(directory: Path) -> str:
    return f"sqlite:///{directory / OPTUNA_FILE}"


def resolve_tracking_uri(uri: str, base: Path | None = None) -> str:
    """Make a relative ``sqlite:///`` path absolute, so that every process on every working
    directory (Tune changes the trials') writes the same store."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        path = Path(uri[len(prefix):])
        return prefix + str(((base or Path.cwd()) / path).resolve())
    return uri


def local_artifact_root(uri: str) -> str | None:
    """Artifacts of a sqlite store live beside the database file; a server manages its own."""
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        return (Path(uri[len(prefix):]).parent / "mlartifacts").resolve().as_uri()
    return None
