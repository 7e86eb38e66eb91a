"""Where sweeps are stored: a folder (on a cluster, one every node mounts) or a ``pyarrow.fs``
URI (``s3://bucket/runs``, ``gs://bucket/runs``, ``hdfs://...``), as Ray's
``RunConfig(storage_path=...)`` takes them.

Ray Tune and Ray Train write a sweep's experiment state, trial folders and checkpoints straight
to that location, from whichever node they run on. The sweep driver's own files (``study.json``,
the Optuna RDB ``optuna.db``, the tracking outbox, ``results/``, ``report/``) need a POSIX file
(sqlite, atomic renames): for a URI they live in a local mirror,
``$STUDY_MIRROR/<location>/<name>`` (default ``/tmp/study-mirror``), pushed to the URI
whenever a trial ends and when the sweep stops, and pulled back by ``study resume``,
``study export``, ``study sync``, ``study report`` and ``study ls`` on any machine.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import tempfile
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from study.vocabulary import DRIVER_FILES, STATE_FILE
from trainables.validation import ConfigError

if TYPE_CHECKING:
    import pyarrow.fs

logger = logging.getLogger(__name__)

URI_PATTERN = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss", "file")
MIRROR_VARIABLE = "STUDY_MIRROR"
DEFAULT_MIRROR = "/tmp/study-mirror"


@dataclass(frozen=True)
class SweepStorage:
    """A ``--storage`` value: a folder, or a pyarrow.fs URI (query options such as
    ``?endpoint_override=host:9000`` kept)."""

    location: str

    def __post_init__(self) -> None:
        found = URI_PATTERN.match(self.location)
        if not self.location:
            raise ConfigError(
                "storage",
                self.location,
                "a folder or a pyarrow.fs URI (s3://bucket/runs, gs://bucket/runs)",
            )
        if found and found["scheme"].lower() not in SCHEMES:
            raise ConfigError(
                "storage",
                self.location,
                f"a folder or a pyarrow.fs URI with a scheme of {list(SCHEMES)}",
            )

    @property
    def is_uri(self) -> bool:
        return URI_PATTERN.match(self.location) is not None

    @property
    def local_root(self) -> Path:
        """The folder itself, or this machine's mirror of the URI's driver files."""
        if not self.is_uri:
            return Path(self.location).expanduser().resolve()
        readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.location.split("?")[0]).strip("_")
        return Path(os.environ.get(MIRROR_VARIABLE, DEFAULT_MIRROR)) / readable

    @property
    def shared_folder(self) -> Path | None:
        """The folder every node of a cluster must see (None for object storage)."""
        return None if self.is_uri else self.local_root

    def directory(self, name: str) -> Path:
        """The sweep's folder on this machine (for a URI, its mirror)."""
        root = self.local_root
        directory = (root / name).resolve()
        if directory.parent != root.resolve():
            raise ConfigError("name", name, f"a plain name inside the storage root {self.location}")
        return directory

    @property
    def tune_root(self) -> str:
        """``storage_path`` for Ray Tune."""
        return self.location if self.is_uri else str(self.local_root)

    def remote(self, name: str, *parts: str) -> str:
        """``name/parts`` under the storage, as Ray takes it (a URI keeps its query)."""
        if not self.is_uri:
            return str(self.directory(name).joinpath(*parts))
        base, _, query = self.location.partition("?")
        path = "/".join([base.rstrip("/"), name, *parts])
        return f"{path}?{query}" if query else path

    def filesystem(self, name: str = "") -> tuple[pyarrow.fs.FileSystem, str]:
        import pyarrow.fs

        try:
            return pyarrow.fs.FileSystem.from_uri(self.remote(name) if name else self.location)
        except (OSError, ValueError) as error:
            raise ConfigError(
                "storage", self.location, f"a pyarrow.fs URI this machine can open ({error})"
            ) from error

    def exists(self, name: str) -> bool:
        if not self.is_uri:
            return self.directory(name).exists()
        import pyarrow.fs

        filesystem, path = self.filesystem(name)
        return filesystem.get_file_info(path).type != pyarrow.fs.FileType.NotFound

    def names(self) -> list[str]:
        """The sweeps stored here (folders holding a ``study.json``)."""
        if not self.is_uri:
            return sorted(path.parent.name for path in self.local_root.glob(f"*/{STATE_FILE}"))
        import pyarrow.fs

        filesystem, root = self.filesystem()
        found = filesystem.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
        folders = [info.base_name for info in found if info.type == pyarrow.fs.FileType.Directory]
        return sorted(
            name
            for name in folders
            if filesystem.get_file_info(f"{root}/{name}/{STATE_FILE}").is_file
        )

    def push(self, name: str) -> None:
        """Copy the driver's files of sweep ``name`` to the URI (nothing to do for a folder)."""
        self._copy(name, upload=True)

    def pull(self, name: str) -> Path:
        """Sweep ``name``'s folder on this machine: for a URI, its driver's files are copied
        into this machine's mirror first."""
        self._copy(name, upload=False)
        return self.directory(name)

    def _copy(self, name: str, upload: bool) -> None:
        if not self.is_uri:
            return
        import pyarrow.fs

        filesystem, remote = self.filesystem(name)
        local = self.directory(name)
        local.mkdir(parents=True, exist_ok=True)
        here = pyarrow.fs.LocalFileSystem()
        with tempfile.TemporaryDirectory(prefix="study-push-") as scratch:
            for entry in DRIVER_FILES:
                source, target = (
                    (local / entry, f"{remote}/{entry}")
                    if upload
                    else (f"{remote}/{entry}", local / entry)
                )
                source_fs, target_fs = (here, filesystem) if upload else (filesystem, here)
                info = source_fs.get_file_info(str(source))
                if info.type == pyarrow.fs.FileType.NotFound:
                    continue
                if info.type == pyarrow.fs.FileType.Directory:
                    target_fs.create_dir(str(target), recursive=True)
                elif upload and entry.endswith(".db"):
                    source = snapshot(Path(source), Path(scratch) / entry)
                pyarrow.fs.copy_files(
                    str(source),
                    str(target),
                    source_filesystem=source_fs,
                    destination_filesystem=target_fs,
                )


def pushed(storage: SweepStorage, name: str) -> None:
    """Push the driver's files to object storage; a failure is a warning (the mirror keeps them)."""
    try:
        storage.push(name)
    except OSError as error:
        logger.warning(
            "could not copy sweep %s's files to %s (%s): they are kept in %s; the next push "
            "retries",
            name,
            storage.location,
            error,
            storage.directory(name),
        )


def snapshot(database: Path, copy: Path) -> Path:
    """A consistent copy of a sqlite database another connection may be writing."""
    with closing(sqlite3.connect(database)) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)
    return copy
