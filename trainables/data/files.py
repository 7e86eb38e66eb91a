"""Filesystem checks shared by the on-disk loaders."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

MAX_LISTED = 5


def missing_files(folder: Path, names: Iterable[str]) -> list[str]:
    """The entries of ``names`` that are not regular files inside ``folder``."""
    return [name for name in names if not (folder / name).is_file()]


def preview(names: list[str]) -> str:
    """The first few ``names``, comma separated, with an ellipsis when there are more."""
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (", ..." if len(names) > MAX_LISTED else "")
