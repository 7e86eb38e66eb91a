"""A dataset held as one image tensor and one label tensor."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils.data import Dataset

UNLABELLED = -1


class TensorImageDataset(Dataset[tuple[Tensor, int]]):
    """Images ``uint8 [N, 3, H, W]`` and labels ``int64 [N]`` (``-1`` where there is no label).

    Training code may use :attr:`images` and :attr:`labels` directly to keep the whole dataset
    as one tensor (on a device, say). Bundled datasets share these tensors between calls of
    ``get_dataset``, so treat them as read-only.
    """

    def __init__(self, images: Tensor, labels: Tensor, classes: tuple[str, ...] = ()) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape)
            raise ValueError(f"images must be uint8 [N, 3, H, W], got {images.dtype} {shape}")
        if labels.shape != (images.shape[0],):
            shape = tuple(labels.shape)
            raise ValueError(f"labels must have shape [{images.shape[0]}], got {shape}")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.classes = classes

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> TensorImageDataset:
        """The same dataset with its images (and labels) on ``device``; itself if already there."""
        if self.images.device == torch.device(device):
            return self
        return TensorImageDataset(self.images.to(device), self.labels.to(device), self.classes)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])


class SceneObject(NamedTuple):
    """One object of a scene: its class and its box in canvas pixels, ``x1``/``y1`` exclusive."""

    label: int
    x0: int
    y0: int
    x1: int
    y1: int


class Scenes(TensorImageDataset):
    """Unlabelled scenes plus :attr:`objects`, the objects placed in each scene."""

    def __init__(self, images: Tensor, objects: tuple[tuple[SceneObject, ...], ...]) -> None:
        labels = torch.full((images.shape[0],), UNLABELLED, dtype=torch.int64)
        super().__init__(images, labels)
        self.objects = [list(scene) for scene in objects]
