"""Datasets built in-process from scikit-learn's bundled digits: no files, no download.

``digits`` is the 8x8 handwritten-digit set upscaled to 32x32. ``digit-scenes`` pastes 2 to 4
train digits of distinct classes onto 64x64 canvases: a small, offline, scene-centric
stand-in for COCO. Both are deterministic and built once per process and split.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from trainables.data.in_memory import SceneObject, Scenes, TensorImageDataset

DIGIT_SIZE = 32
DIGIT_MAX_VALUE = 16
DIGIT_TEST_FRACTION = 0.25
DIGIT_SPLIT_SEED = 0

SCENE_SIZE = 64
SCENE_OBJECTS = (2, 4)
SCENE_OBJECT_SIDES = (20, 32)
SCENE_COUNTS = {"train": 2000, "test": 500}
SCENE_SEEDS = {"train": 0, "test": 1}


def _resize(images: Tensor, side: int) -> Tensor:
    """Bilinear resize of ``[N, C, h, w]`` to ``side x side``, as float."""
    return F.interpolate(images.float(), size=(side, side), mode="bilinear", align_corners=False)


def _to_uint8(images: Tensor) -> Tensor:
    return images.round().clamp(0, 255).to(torch.uint8)


@functools.lru_cache(maxsize=None)
def _digits(split: str) -> tuple[Tensor, Tensor]:
    """``uint8 [N, 3, 32, 32]`` images and labels of the fixed stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    pixels = torch.from_numpy(bunch.images).unsqueeze(1) * (255 / DIGIT_MAX_VALUE)
    images = _to_uint8(_resize(pixels, DIGIT_SIZE)).expand(-1, 3, -1, -1)
    train_index, test_index = train_test_split(
        np.arange(len(bunch.target)),
        test_size=DIGIT_TEST_FRACTION,
        stratify=bunch.target,
        random_state=DIGIT_SPLIT_SEED,
    )
    index = torch.from_numpy(train_index if split == "train" else test_index)
    return images[index].contiguous(), torch.from_numpy(bunch.target[index.numpy()]).long()


def _plan_scene(
    rng: np.random.Generator, by_class: list[np.ndarray]
) -> list[tuple[int, SceneObject]]:
    """Draw (digit index, placement) for every object of one scene."""
    count = int(rng.integers(SCENE_OBJECTS[0], SCENE_OBJECTS[1] + 1))
    classes = rng.choice(len(by_class), size=count, replace=False)
    plan = []
    for label in classes:
        digit = int(rng.choice(by_class[label]))
        side = int(rng.integers(SCENE_OBJECT_SIDES[0], SCENE_OBJECT_SIDES[1] + 1))
        x0, y0 = (int(v) for v in rng.integers(0, SCENE_SIZE - side + 1, size=2))
        plan.append((digit, SceneObject(int(label), x0, y0, x0 + side, y0 + side)))
    return plan


def _resized_objects(digits: Tensor, plans: list[list[tuple[int, SceneObject]]]) -> list[Tensor]:
    """The pasted pixels of every object, in plan order, resized in one batch per side."""
    flat = [(digit, box.x1 - box.x0) for plan in plans for digit, box in plan]
    sides = torch.tensor([side for _, side in flat])
    sources = torch.tensor([digit for digit, _ in flat])
    resized: list[Tensor] = [torch.empty(0)] * len(flat)
    for side in sides.unique().tolist():
        positions = torch.nonzero(sides == side).flatten()
        batch = _to_uint8(_resize(digits[sources[positions]], side))
        for position, pixels in zip(positions.tolist(), batch, strict=True):
            resized[position] = pixels
    return resized


@functools.lru_cache(maxsize=None)
def _digit_scenes(split: str) -> tuple[Tensor, tuple[tuple[SceneObject, ...], ...]]:
    """Scenes composited by per-pixel max, so overlapping digits both stay visible."""
    digits, labels = _digits("train")
    by_class = [np.flatnonzero(labels.numpy() == c) for c in range(int(labels.max()) + 1)]
    rng = np.random.default_rng(SCENE_SEEDS[split])
    plans = [_plan_scene(rng, by_class) for _ in range(SCENE_COUNTS[split])]

    pasted = iter(_resized_objects(digits[:, :1], plans))
    canvases = torch.zeros(len(plans), 1, SCENE_SIZE, SCENE_SIZE, dtype=torch.uint8)
    for scene, plan in enumerate(plans):
        for _, box in plan:
            region = canvases[scene, :, box.y0 : box.y1, box.x0 : box.x1]
            region.copy_(torch.maximum(region, next(pasted)))
    objects = tuple(tuple(box for _, box in plan) for plan in plans)
    return canvases.expand(-1, 3, -1, -1).contiguous(), objects


def load_digits_split(root: Path, split: str, download: bool) -> TensorImageDataset:
    images, labels = _digits(split)
    return TensorImageDataset(images, labels, tuple(str(c) for c in range(10)))


def load_digit_scenes(root: Path, split: str, download: bool) -> Scenes:
    return Scenes(*_digit_scenes(split))
