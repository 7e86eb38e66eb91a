"""Where a sweep keeps its files and its tracking store, importable without Ray.

``STORAGE/NAME/`` holds ``study.json`` (the sweep's :class:`~study.state.SweepState`),
``optuna.db`` (the searcher's study), Ray Tune's experiment state and trial folders, ``train/``
(Ray Train runs and checkpoints), ``results/`` (the Parquet tables) and ``report/``; the names
are :mod:`study.vocabulary`'s.
"""

from __future__ import annotations

from pathlib import Path

from study.storage import SweepStorage
from study.vocabulary import OPTUNA_FILE

SQLITE_PREFIX = "sqlite:///"


def sweep_directory(storage: str | Path, name: str) -> Path:
    """Sweep ``name``'s folder on this machine (for object storage, its local mirror:
    :mod:`study.storage`)."""
    return SweepStorage(str(storage)).directory(name)


def optuna_storage(directory: Path) -> str:
    return f"{SQLITE_PREFIX}{directory / OPTUNA_FILE}"


def resolve_tracking_uri(uri: str, base: Path | None = None) -> str:
    """Make a relative ``sqlite:///`` path absolute, so that every process on every working
    directory (Tune changes the trials') writes the same store."""
    if uri.startswith(SQLITE_PREFIX) and not uri.startswith(SQLITE_PREFIX + "/"):
        path = Path(uri[len(SQLITE_PREFIX) :])
        return SQLITE_PREFIX + str(((base or Path.cwd()) / path).resolve())
    return uri


def local_artifact_root(uri: str) -> str | None:
    """Artifacts of a sqlite store live beside the database file; a server manages its own."""
    if uri.startswith(SQLITE_PREFIX):
        return (Path(uri[len(SQLITE_PREFIX) :]).parent / "mlartifacts").resolve().as_uri()
    return None
