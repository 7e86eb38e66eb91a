"""The one registry of datasets, and the entry point that validates a request and loads it."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from torch.utils.data import Dataset

from trainables.validation import ConfigError, check_choice

DATA_ROOT_VARIABLE = "STUDY_DATA_ROOT"
IMAGENET_EVAL_CROP = 224 / 256
DEFAULT_DATA_ROOT = "data"

Loader = Callable[[Path, str, bool], Dataset]


@dataclass(frozen=True)
class DatasetInfo:
    """What the rest of the platform needs to know about a dataset, and how to load it.

    ``labelled_splits`` are the splits whose labels are real (usable as a kNN memory bank or
    queries). ``default_eval`` names the labelled dataset on which a model trained on this one
    is evaluated by kNN. ``bundled`` datasets need no files: they are built in-process (the
    pattern sets are drawn once and cached under ``root``).
    ``smallest_class`` is the image count of the smallest class in the kNN bank (the train
    split): a kNN ``k`` above it lets the other classes outvote a query's own class even when
    every one of its class's images is among the neighbours, so configs keep ``k`` at or below it.
    ``eval_crop`` is the side of the evaluation view over the image's shorter side: 1 keeps the
    whole centred square; 224/256 is the standard protocol at 224 px (resize the shorter side to
    256/224 of the view size, then centre-crop the view size).
    ``image_size`` is the ``(height, width)`` of its images, or of a typical one where they vary
    (COCO's 480x640, ImageNet's 375x500): the shape on which a config's views are checked for
    feasibility and a distance margin is calibrated.
    ``split_aliases`` maps accepted extra split names onto entries of ``splits``. ``loader`` is
    ``"module:function"``, imported on first use: the parsers pull in torchvision and sklearn,
    which a process that only validates configs (a trial driver, the Train controller) never needs.
    """

    name: str
    splits: tuple[str, ...]
    labelled_splits: tuple[str, ...]
    num_classes: int | None
    scene_centric: bool
    default_eval: str | None
    bundled: bool
    loader: str = field(repr=False, compare=False)
    smallest_class: int | None = None
    image_size: tuple[int, int] = (32, 32)
    eval_crop: float = 1.0
    split_aliases: Mapping[str, str] = field(default_factory=dict, compare=False)

    def resolve_split(self, split: str) -> str:
        """The canonical split for ``split``; :class:`ConfigError` if it is not accepted."""
        check_choice("split", split, (*self.splits, *self.split_aliases))
        return self.split_aliases.get(split, split)

    def load(self, root: Path, split: str, download: bool) -> Dataset:
        module, function = self.loader.split(":")
        load: Loader = getattr(importlib.import_module(module), function)
        return load(root, split, download)


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            name="cifar10",
            splits=("train", "test"),
            labelled_splits=("train", "test"),
            num_classes=10,
            scene_centric=False,
            default_eval="cifar10",
            bundled=False,
            loader="trainables.data.binary_sets:load_cifar10",
            smallest_class=5000,
        ),
        DatasetInfo(
            name="cifar100",
            splits=("train", "test"),
            labelled_splits=("train", "test"),
            num_classes=100,
            scene_centric=False,
            default_eval="cifar100",
            bundled=False,
            loader="trainables.data.binary_sets:load_cifar100",
            smallest_class=500,
        ),
        DatasetInfo(
            name="stl10",
            splits=("train", "test", "unlabeled"),
            labelled_splits=("train", "test"),
            num_classes=10,
            scene_centric=False,
            default_eval="stl10",
            bundled=False,
            loader="trainables.data.binary_sets:load_stl10",
            image_size=(96, 96),
            smallest_class=500,
        ),
        DatasetInfo(
            name="imagenet100",
            splits=("train", "val"),
            labelled_splits=("train", "val"),
            num_classes=100,
            scene_centric=False,
            default_eval="imagenet100",
            bundled=False,
            loader="trainables.data.image_folders:load_imagenet100",
            image_size=(375, 500),
            # ImageNet-1k's smallest train class; the 100-class subset has no smaller one
            smallest_class=732,
            eval_crop=IMAGENET_EVAL_CROP,
            split_aliases={"test": "val"},
        ),
        DatasetInfo(
            name="coco",
            splits=("train", "val"),
            labelled_splits=(),
            num_classes=None,
            scene_centric=True,
            default_eval="cifar10",
            bundled=False,
            loader="trainables.data.image_folders:load_coco",
            image_size=(480, 640),
        ),
        DatasetInfo(
            name="digits",
            splits=("train", "test"),
            labelled_splits=("train", "test"),
            num_classes=10,
            scene_centric=False,
            default_eval="digits",
            bundled=True,
            loader="trainables.data.bundled:load_digits_split",
            smallest_class=131,
        ),
        DatasetInfo(
            name="digit-scenes",
            splits=("train", "test"),
            labelled_splits=(),
            num_classes=None,
            scene_centric=True,
            default_eval="digits",
            bundled=True,
            loader="trainables.data.bundled:load_digit_scenes",
            image_size=(64, 64),
        ),
        DatasetInfo(
            name="patterns",
            splits=("train", "test"),
            labelled_splits=("train", "test"),
            num_classes=10,
            scene_centric=False,
            default_eval="patterns",
            bundled=True,
            loader="trainables.data.pattern_sets:load_patterns",
            smallest_class=600,
        ),
        DatasetInfo(
            name="pattern-scenes",
            splits=("train", "test"),
            labelled_splits=(),
            num_classes=None,
            scene_centric=True,
            default_eval="patterns",
            bundled=True,
            loader="trainables.data.pattern_sets:load_pattern_scenes",
            image_size=(64, 64),
        ),
    )
}


def default_data_root() -> Path:
    """``$STUDY_DATA_ROOT`` if set (and not empty), else ``data`` relative to the cwd."""
    return Path(os.environ.get(DATA_ROOT_VARIABLE) or DEFAULT_DATA_ROOT)


def get_dataset(
    name: str, root: str | Path | None = None, split: str = "train", download: bool = False
) -> Dataset:
    """Load split ``split`` of dataset ``name`` from ``root`` (default: :func:`default_data_root`).

    Items are ``(uint8 Tensor[3, H, W], int label)`` with label ``-1`` where there is none.
    The name and split are validated before the filesystem is touched. Missing files raise
    :class:`FileNotFoundError` saying where they were expected and how to obtain them.
    """
    info = DATASETS[check_choice("dataset", name, tuple(DATASETS))]
    canonical_split = info.resolve_split(split)
    if not isinstance(download, bool):
        raise ConfigError("download", download, "a bool")
    data_root = Path(root) if root is not None else default_data_root()
    return info.load(data_root, canonical_split, download)
