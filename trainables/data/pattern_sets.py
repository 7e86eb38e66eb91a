"""The bundled SSL benchmark: ``patterns`` (object-centric) and ``pattern-scenes`` (scenes).

``patterns`` holds one patterned object per 32 px image, 600 train and 200 test images per
class; ``pattern-scenes`` holds 2 to 4 objects of distinct classes per 64 px canvas, for training
scene-centric and evaluating on ``patterns`` (the setting of the paper's Fig. 5). What varies and
why is in :mod:`trainables.data.patterns`. Both are deterministic from their seeds, drawn on
first use and cached under ``<root>/bundled/`` (written atomically; a root that cannot be
written is skipped with a warning, and the images are drawn in memory).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from trainables.data.in_memory import SceneObject, Scenes, TensorImageDataset
from trainables.data.patterns import (
    CLASSES,
    ObjectDraw,
    ObjectSpec,
    colour_field,
    render_objects,
    sample_objects,
    to_uint8,
)

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
"""Part of every cache file's name: bump it whenever the drawing code changes the pixels."""
CACHE_DIR = "bundled"
RENDER_CHUNK = 500


@dataclass(frozen=True)
class PatternSetSpec:
    """One split of a pattern dataset: how many canvases, their side, and the draw's seed.

    ``objects`` is the (min, max) count per canvas; one means object-centric. ``object_side``
    overrides the object spec's size range with a side range in pixels (scenes).
    """

    count: int
    seed: int
    canvas: int = 32
    objects: tuple[int, int] = (1, 1)
    object_side: tuple[int, int] | None = None
    background_cells: int = 4
    noise: float = 0.06
    object_spec: ObjectSpec = field(default_factory=ObjectSpec)

    @property
    def digest(self) -> str:
        """A short hash of everything that determines the pixels, for the cache file's name."""
        text = repr((GENERATOR_VERSION, CLASSES, asdict(self)))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


PATTERN_SPLITS = {
    "train": PatternSetSpec(count=600 * len(CLASSES), seed=0),
    "test": PatternSetSpec(count=200 * len(CLASSES), seed=1),
}
SCENE_SPLITS = {
    split: PatternSetSpec(
        count=count, seed=seed, canvas=64, objects=(2, 4), object_side=(20, 32), background_cells=6
    )
    for split, count, seed in (("train", 2000, 2), ("test", 500, 3))
}


def _balanced_labels(rng: np.random.Generator, count: int) -> np.ndarray:
    labels = np.arange(count) % len(CLASSES)
    rng.shuffle(labels)
    return labels


def _render(canvases: Tensor, draw: ObjectDraw, present: np.ndarray) -> Tensor:
    """Paint ``draw`` in chunks of canvases (the supersampled frames take memory per pixel)."""
    present_t = torch.from_numpy(present)
    chunks = []
    for start in range(0, len(draw), RENDER_CHUNK):
        rows = slice(start, start + RENDER_CHUNK)
        chunks.append(render_objects(canvases[rows], draw[rows], present_t[rows]))
    return torch.cat(chunks)


def draw_objects(spec: PatternSetSpec) -> tuple[Tensor, Tensor]:
    """``uint8 [count, 3, 32, 32]`` object-centric images and their class labels."""
    rng = np.random.default_rng(spec.seed)
    labels = _balanced_labels(rng, spec.count)
    draw = sample_objects(rng, labels, spec.canvas, spec.object_spec)
    background = colour_field(rng, spec.count, spec.canvas, spec.background_cells)
    images = _render(background, draw, np.ones(spec.count, dtype=bool))
    return to_uint8(images, rng, spec.noise), torch.from_numpy(labels).long()


def _box(draw: ObjectDraw, index: int, canvas: int) -> SceneObject:
    reach = float(max(draw.half_width[index], draw.half_height[index]))
    x, y = float(draw.centre_x[index]), float(draw.centre_y[index])
    return SceneObject(
        int(draw.label[index]),
        max(0, int(np.floor(x - reach))),
        max(0, int(np.floor(y - reach))),
        min(canvas, int(np.ceil(x + reach))),
        min(canvas, int(np.ceil(y + reach))),
    )


def draw_scenes(spec: PatternSetSpec) -> tuple[Tensor, tuple[tuple[SceneObject, ...], ...]]:
    """Scenes of 2 to 4 objects of distinct classes, painted in layers (later ones occlude)."""
    rng = np.random.default_rng(spec.seed)
    low, high = spec.objects
    counts = rng.integers(low, high + 1, spec.count)
    classes = np.stack([rng.permutation(len(CLASSES))[:high] for _ in range(spec.count)])
    canvases = colour_field(rng, spec.count, spec.canvas, spec.background_cells)
    boxes: list[list[SceneObject]] = [[] for _ in range(spec.count)]
    for layer in range(high):
        sides = rng.uniform(*spec.object_side, spec.count) / 2 if spec.object_side else None
        draw = sample_objects(
            rng, classes[:, layer], spec.canvas, spec.object_spec, half_side=sides
        )
        present = counts > layer
        canvases = _render(canvases, draw, present)
        for scene in np.flatnonzero(present):
            boxes[scene].append(_box(draw, scene, spec.canvas))
    return to_uint8(canvases, rng, spec.noise), tuple(tuple(scene) for scene in boxes)


def _cache_path(root: Path, name: str, split: str, spec: PatternSetSpec) -> Path:
    return root / CACHE_DIR / f"{name}-{split}-{spec.digest}.pt"


Tensors = dict[str, Tensor]


def _cached(path: Path, build: Callable[[], Tensors]) -> Tensors:
    """``build()``'s tensors, read from ``path`` when an earlier call wrote it there (tensors
    only: ``weights_only`` loading runs no pickled code), else drawn and written."""
    if path.is_file():
        try:
            return torch.load(path, weights_only=True)
        except Exception as error:  # torch raises RuntimeError, EOFError, ... on a cut file
            log.warning("bundled data cache %s is unreadable (%s): drawing it again", path, error)
    tensors = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".partial")
        os.close(handle)
        torch.save(tensors, partial)
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    except OSError as error:
        log.warning("bundled data not cached under %s (%s): drawn in memory", path.parent, error)
    return tensors


def _object_tensors(spec: PatternSetSpec) -> Tensors:
    images, labels = draw_objects(spec)
    return {"images": images, "labels": labels}


def _scene_tensors(spec: PatternSetSpec) -> Tensors:
    """Scenes and ``boxes``: one ``(scene, label, x0, y0, x1, y1)`` row per object."""
    images, objects = draw_scenes(spec)
    rows = [(scene, *box) for scene, boxes in enumerate(objects) for box in boxes]
    return {"images": images, "boxes": torch.tensor(rows, dtype=torch.int64)}


@functools.lru_cache(maxsize=None)
def _patterns(root: Path, split: str) -> Tensors:
    spec = PATTERN_SPLITS[split]
    return _cached(_cache_path(root, "patterns", split, spec), lambda: _object_tensors(spec))


@functools.lru_cache(maxsize=None)
def _pattern_scenes(root: Path, split: str) -> Tensors:
    spec = SCENE_SPLITS[split]
    return _cached(_cache_path(root, "pattern-scenes", split, spec), lambda: _scene_tensors(spec))


def load_patterns(root: Path, split: str, download: bool) -> TensorImageDataset:
    tensors = _patterns(Path(root).resolve(), split)
    return TensorImageDataset(tensors["images"], tensors["labels"], CLASSES)


def load_pattern_scenes(root: Path, split: str, download: bool) -> Scenes:
    tensors = _pattern_scenes(Path(root).resolve(), split)
    objects: list[list[SceneObject]] = [[] for _ in range(len(tensors["images"]))]
    for scene, *box in tensors["boxes"].tolist():
        objects[scene].append(SceneObject(*box))
    return Scenes(tensors["images"], tuple(tuple(scene) for scene in objects))
