"""The bundled SSL benchmark: patterned objects and scenes, their draw, rendering and cache."""

from __future__ import annotations

import colorsys
import dataclasses
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from trainables.data import DATASETS, get_dataset, pattern_sets
from trainables.data.pattern_sets import PATTERN_SPLITS, SCENE_SPLITS, draw_objects, draw_scenes
from trainables.data.patterns import (
    CLASSES,
    ObjectSpec,
    colour_field,
    hsv_to_rgb,
    render_objects,
    sample_objects,
)

SMALL = dataclasses.replace(PATTERN_SPLITS["test"], count=60)
SMALL_SCENES = dataclasses.replace(SCENE_SPLITS["test"], count=40)


@given(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1))
def test_hsv_to_rgb_matches_colorsys(hue: float, saturation: float, value: float) -> None:
    rgb = hsv_to_rgb(*(torch.tensor([x], dtype=torch.float64) for x in (hue, saturation, value)))
    assert torch.allclose(
        rgb[0],
        torch.tensor(colorsys.hsv_to_rgb(hue % 1.0, saturation, value), dtype=torch.float64),
        atol=1e-9,
    )


@given(st.integers(0, 2**32 - 1), st.integers(16, 80))
def test_an_object_lies_inside_its_canvas_or_is_centred_when_larger(seed: int, canvas: int) -> None:
    rng = np.random.default_rng(seed)
    draw = sample_objects(rng, rng.integers(0, len(CLASSES), 32), canvas, ObjectSpec())
    reach = torch.maximum(draw.half_width, draw.half_height)
    fits = 2 * reach <= canvas
    for centre in (draw.centre_x, draw.centre_y):
        assert torch.all(centre[fits] - reach[fits] >= -1e-4) and torch.all(
            centre[fits] + reach[fits] <= canvas + 1e-4
        )
        assert torch.allclose(centre[~fits], torch.tensor(canvas / 2))
    assert torch.all((draw.colour >= 0) & (draw.colour <= 1)) and torch.all(
        (draw.motif_colour >= 0) & (draw.motif_colour <= 1)
    )


def test_the_two_colours_of_a_motif_differ_in_value_by_the_spec_gap() -> None:
    rng = np.random.default_rng(0)
    spec = ObjectSpec()
    draw = sample_objects(rng, np.zeros(500, dtype=np.int64), 32, spec)
    gap = (draw.colour.amax(dim=1) - draw.motif_colour.amax(dim=1)).abs()  # HSV value = max channel
    assert gap.min() >= spec.value_gap[0] - 1e-5 and gap.max() <= spec.value_gap[1] + 1e-5


def test_rendering_paints_inside_the_silhouette_only() -> None:
    rng = np.random.default_rng(1)
    labels = np.arange(len(CLASSES))
    draw = sample_objects(rng, labels, 32, ObjectSpec())
    canvases = torch.full((len(labels), 32, 32, 3), 0.5)
    painted = render_objects(canvases, draw)
    reach = torch.maximum(draw.half_width, draw.half_height) * math.sqrt(2)
    ys, xs = torch.meshgrid(torch.arange(32) + 0.5, torch.arange(32) + 0.5, indexing="ij")
    for index in range(len(labels)):
        far = (xs - draw.centre_x[index]) ** 2 + (ys - draw.centre_y[index]) ** 2 > (
            reach[index] + 1
        ) ** 2
        assert torch.all(painted[index][far] == 0.5)
        assert not torch.all(painted[index][~far] == 0.5)
    absent = render_objects(canvases, draw, present=torch.zeros(len(labels), dtype=torch.bool))
    assert torch.equal(absent, canvases)


def test_each_motif_but_plain_uses_both_colours() -> None:
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(len(CLASSES)), 8)
    draw = sample_objects(rng, labels, 32, ObjectSpec())
    canvases = torch.zeros(len(labels), 32, 32, 3)
    painted = render_objects(canvases, draw)
    second = (painted - draw.motif_colour[:, None, None]).abs().sum(-1) < 1e-4
    share = second.flatten(1).float().mean(1).view(len(CLASSES), 8).mean(1)
    for label, name in enumerate(CLASSES):
        if name == "plain":
            assert share[label] == 0
        else:
            assert 0.05 < share[label] < 0.6, name


def test_backgrounds_vary_within_an_image() -> None:
    fields = colour_field(np.random.default_rng(3), 20, 32, 4)
    assert fields.shape == (20, 32, 32, 3)
    left, right = fields[:, :, :8].mean(dim=(1, 2)), fields[:, :, -8:].mean(dim=(1, 2))
    assert (left - right).abs().amax(dim=1).mean() > 0.1


def test_the_draw_is_deterministic_and_seeded() -> None:
    images, labels = draw_objects(SMALL)
    again, again_labels = draw_objects(SMALL)
    other, _ = draw_objects(dataclasses.replace(SMALL, seed=SMALL.seed + 1))
    assert torch.equal(images, again) and torch.equal(labels, again_labels)
    assert not torch.equal(images, other)
    assert images.dtype == torch.uint8 and images.shape == (60, 3, 32, 32)
    assert torch.equal(
        torch.bincount(labels, minlength=len(CLASSES)), torch.full((len(CLASSES),), 6)
    )


def test_scenes_hold_two_to_four_objects_of_distinct_classes() -> None:
    images, objects = draw_scenes(SMALL_SCENES)
    assert images.shape == (40, 3, 64, 64)
    for boxes in objects:
        assert 2 <= len(boxes) <= 4 and len({box.label for box in boxes}) == len(boxes)
        for box in boxes:
            assert 0 <= box.x0 < box.x1 <= 64 and 0 <= box.y0 < box.y1 <= 64
            assert 0 <= box.label < len(CLASSES)


def test_the_splits_are_registered_with_enough_images_per_class_for_knn() -> None:
    assert PATTERN_SPLITS["train"].count // len(CLASSES) >= 500
    assert DATASETS["patterns"].smallest_class == PATTERN_SPLITS["train"].count // len(CLASSES)
    assert (
        DATASETS["pattern-scenes"].default_eval == "patterns"
        and DATASETS["pattern-scenes"].scene_centric
    )


def test_a_dataset_is_cached_under_the_root_and_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(pattern_sets.PATTERN_SPLITS, "test", SMALL)
    pattern_sets._patterns.cache_clear()
    first = get_dataset("patterns", root=tmp_path, split="test")
    cached = list((tmp_path / pattern_sets.CACHE_DIR).iterdir())
    assert [path.suffix for path in cached] == [".pt"] and cached[0].name.startswith(
        "patterns-test-"
    )
    stamp = cached[0].stat().st_mtime_ns
    pattern_sets._patterns.cache_clear()
    second = get_dataset("patterns", root=tmp_path, split="test")
    assert cached[0].stat().st_mtime_ns == stamp
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert first.classes == CLASSES
    pattern_sets._patterns.cache_clear()


def test_a_cut_cache_is_drawn_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    monkeypatch.setitem(pattern_sets.PATTERN_SPLITS, "test", SMALL)
    pattern_sets._patterns.cache_clear()
    expected = get_dataset("patterns", root=tmp_path, split="test")
    (path,) = (tmp_path / pattern_sets.CACHE_DIR).iterdir()
    path.write_bytes(path.read_bytes()[:100])
    pattern_sets._patterns.cache_clear()
    with caplog.at_level(logging.WARNING):
        again = get_dataset("patterns", root=tmp_path, split="test")
    assert "unreadable" in caplog.text and str(path) in caplog.text
    assert torch.equal(expected.images, again.images)
    pattern_sets._patterns.cache_clear()


def test_an_unwritable_root_draws_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    monkeypatch.setitem(pattern_sets.PATTERN_SPLITS, "test", SMALL)
    pattern_sets._patterns.cache_clear()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING):
        dataset = get_dataset("patterns", root=blocker, split="test")
    assert len(dataset) == SMALL.count and "not cached" in caplog.text
    pattern_sets._patterns.cache_clear()


def test_the_cache_name_changes_with_the_generator() -> None:
    spec = PATTERN_SPLITS["test"]
    assert spec.digest == dataclasses.replace(spec).digest
    assert spec.digest != dataclasses.replace(spec, noise=0.07).digest
    assert (
        spec.digest != dataclasses.replace(spec, object_spec=ObjectSpec(rotation_degrees=20)).digest
    )
