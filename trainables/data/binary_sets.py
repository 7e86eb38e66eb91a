"""CIFAR-10, CIFAR-100 and STL-10, parsed by torchvision from their official on-disk files.

torchvision checks the md5 sums of the official files before parsing them. The subclasses
here only check that the files exist, so the same parser reads small files in the real format
(tests) and hand-copied data; ``download=True`` still goes through torchvision's own download,
which verifies the archive it fetches.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets

from trainables.data.files import missing_files, preview
from trainables.data.in_memory import TensorImageDataset


class _CifarFilesExist:
    """Mixin: batches and meta file present counts as intact (md5 of meta skipped too)."""

    root: str | Path
    base_folder: str

    def _check_integrity(self) -> bool:
        folder = Path(self.root, self.base_folder)
        return not missing_files(folder, _cifar_file_names(type(self)))


class _Cifar10(_CifarFilesExist, datasets.CIFAR10):
    meta = {**datasets.CIFAR10.meta, "md5": None}


class _Cifar100(_CifarFilesExist, datasets.CIFAR100):
    meta = {**datasets.CIFAR100.meta, "md5": None}


class _Stl10(datasets.STL10):
    def _check_integrity(self) -> bool:
        folder = Path(self.root, self.base_folder)
        return not missing_files(folder, [name for name, _ in self.train_list + self.test_list])


def _cifar_file_names(parser: type) -> list[str]:
    batches = [name for name, _ in parser.train_list + parser.test_list]
    return batches + [parser.meta["filename"]]


def _require_files(folder: Path, names: list[str], title: str, download: bool) -> None:
    """Raise FileNotFoundError naming what is missing unless ``download`` will fetch it."""
    if download:
        return
    missing = missing_files(folder, names)
    if missing:
        raise FileNotFoundError(
            f"{title} not found: {folder} lacks {preview(missing)}. "
            f"Pass download=True to fetch it into {folder.parent}."
        )


def _load_cifar(
    parser: type[datasets.CIFAR10], title: str, root: Path, split: str, download: bool
) -> TensorImageDataset:
    _require_files(root / parser.base_folder, _cifar_file_names(parser), title, download)
    parsed = parser(os.fspath(root), train=split == "train", download=download)
    images = torch.from_numpy(np.ascontiguousarray(parsed.data)).permute(0, 3, 1, 2).contiguous()
    labels = torch.as_tensor(parsed.targets, dtype=torch.int64)
    return TensorImageDataset(images, labels, tuple(parsed.classes))


def load_cifar10(root: Path, split: str, download: bool) -> TensorImageDataset:
    return _load_cifar(_Cifar10, "CIFAR-10", root, split, download)


def load_cifar100(root: Path, split: str, download: bool) -> TensorImageDataset:
    return _load_cifar(_Cifar100, "CIFAR-100", root, split, download)


def load_stl10(root: Path, split: str, download: bool) -> TensorImageDataset:
    """STL-10 at 96x96; labels are 0-based, ``-1`` for the ``unlabeled`` split."""
    names = [name for name, _ in _Stl10.train_list + _Stl10.test_list]
    _require_files(root / _Stl10.base_folder, names, "STL-10", download)
    parsed = _Stl10(os.fspath(root), split=split, download=download)
    images = torch.from_numpy(np.ascontiguousarray(parsed.data))
    labels = torch.from_numpy(np.asarray(parsed.labels, dtype=np.int64))
    return TensorImageDataset(images, labels, tuple(getattr(parsed, "classes", ())))
