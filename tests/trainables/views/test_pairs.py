"""Overlapping crop pairs with their own zoom and stretch: exact overlap, honoured ranges, and
the feasible overlaps checked against random pairs and refused with their range."""

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from search_spaces import exclusive as exclusive_space
from trainables.config import TrainConfig
from trainables.validation import ConfigError
from trainables.views import make_views
from trainables.views.boxes import box_area, box_height, box_width, intersection_area
from trainables.views.pairs import (
    feasible_overlap_range,
    largest_exclusive_gap,
    sample_overlapping_pairs,
)

RATIO = (3 / 4, 4 / 3)
sides = st.integers(min_value=8, max_value=600)
seeds = st.integers(min_value=0, max_value=2**31 - 1)
N = 64


def aspects(boxes):
    return box_width(boxes) / box_height(boxes)


@given(
    height=sides,
    width=sides,
    seed=seeds,
    where=st.floats(0.05, 0.95),
    low=st.floats(0.05, 0.9),
    spread=st.floats(0.0, 1.0),
)
@settings(deadline=None)
def test_pairs_share_exactly_the_overlap_with_the_sides_asked_for(
    height, width, seed, where, low, spread
):
    """At any overlap from 5% to 95% of the way through its feasible range."""
    area = (low, low + spread * (1 - low))
    lowest, highest = feasible_overlap_range(area, RATIO, height, width)
    assume(not math.isnan(lowest) and highest - lowest > 0.01)
    overlap = lowest + where * (highest - lowest)
    boxes, found = sample_overlapping_pairs(
        N, height, width, overlap, area, RATIO, torch.Generator().manual_seed(seed)
    )
    assume(bool(found.any()))
    kept = boxes[found]
    shared = intersection_area(kept[:, 0], kept[:, 1]) / (height * width)
    assert torch.allclose(shared, torch.full_like(shared, overlap), atol=1e-9, rtol=0)
    crop_areas = box_area(kept) / (height * width)
    assert (crop_areas >= area[0] - 1e-9).all() and (crop_areas <= area[1] + 1e-9).all()
    assert (aspects(kept) >= RATIO[0] - 1e-9).all() and (aspects(kept) <= RATIO[1] + 1e-9).all()
    assert (kept[..., :2] >= -1e-9).all()
    assert (kept[..., 2] <= width + 1e-9).all() and (kept[..., 3] <= height + 1e-9).all()


@pytest.mark.parametrize(
    ("height", "width", "area"),
    [(96, 96, (0.2, 1.0)), (333, 500, (0.3, 0.6)), (500, 200, (0.1, 0.5))],
)
def test_the_feasible_range_bounds_the_overlap_of_random_pairs(height, width, area):
    """Random crops of the sides' distribution at random positions never share less or more
    than the range, and some come near both ends of it."""
    lowest, highest = feasible_overlap_range(area, RATIO, height, width)
    generator = torch.Generator().manual_seed(0)
    count = 200_000
    sides = []
    for _ in range(2):
        crop_area = (
            height
            * width
            * (
                area[0]
                + (area[1] - area[0]) * torch.rand(count, generator=generator, dtype=torch.float64)
            )
        )
        aspect = torch.exp(
            math.log(RATIO[0])
            + math.log(RATIO[1] / RATIO[0])
            * torch.rand(count, generator=generator, dtype=torch.float64)
        )
        sides.append((torch.sqrt(crop_area * aspect), torch.sqrt(crop_area / aspect)))
    fits = torch.stack([(w <= width) & (h <= height) for w, h in sides]).all(0)
    boxes = []
    for w, h in sides:
        x0 = (width - w).clamp_min(0) * torch.rand(count, generator=generator, dtype=torch.float64)
        y0 = (height - h).clamp_min(0) * torch.rand(count, generator=generator, dtype=torch.float64)
        boxes.append(torch.stack((x0, y0, x0 + w, y0 + h), dim=-1)[fits])
    shared = intersection_area(*boxes) / (height * width)
    assert shared.min() >= lowest - 1e-9 and shared.max() <= highest + 1e-9
    assert shared.min() < lowest + 0.05 and shared.max() > highest - 0.1


@pytest.mark.parametrize(("height", "width"), [(32, 32), (96, 96), (480, 640), (375, 500)])
def test_every_decoupled_setting_the_presets_and_grids_use_finds_its_pairs(height, width):
    """Fallback rows are for the feasible range's very ends; no preset point comes near them."""
    generator = torch.Generator().manual_seed(0)
    settings = [((0.5, 0.5), overlap) for overlap in (0.2, 0.3, 0.4)]
    settings += [((overlap, 1.0), overlap) for overlap in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)]
    for area, overlap in settings:
        lowest, highest = feasible_overlap_range(area, RATIO, height, width)
        if not lowest < overlap < highest:
            continue
        _, found = sample_overlapping_pairs(2000, height, width, overlap, area, RATIO, generator)
        assert bool(found.all()), (area, overlap, float(found.float().mean()))


def test_fixed_crop_area_leaves_only_the_overlap_to_vary():
    generator = torch.Generator().manual_seed(0)
    medians = {}
    for overlap in (0.2, 0.3, 0.4):
        sampler = make_views("overlap", overlap=overlap, crop_area=(0.5, 0.5))
        geometry = sampler.sample(2000, 96, 96, generator)
        assert torch.allclose(
            geometry.view_areas, torch.full_like(geometry.view_areas, 0.5), atol=1e-9
        )
        assert torch.allclose(
            geometry.overlap, torch.full_like(geometry.overlap, overlap), atol=1e-9
        )
        ratio = aspects(geometry.boxes)
        assert (ratio >= RATIO[0] - 1e-9).all() and (ratio <= RATIO[1] + 1e-9).all()
        medians[overlap] = float(geometry.view_areas.median())
    free = make_views("overlap", overlap=0.2).sample(2000, 96, 96, generator)
    assert float(free.view_areas.median()) < 0.45, (
        "the free sampler's crops shrink with the overlap"
    )


def test_decoupled_overlap_keeps_ratio_where_the_free_crops_stretch():
    generator = torch.Generator().manual_seed(0)
    free = make_views("overlap", overlap=0.1).sample(4000, 96, 96, generator)
    decoupled = make_views("overlap", overlap=0.1, crop_ratio=RATIO).sample(4000, 96, 96, generator)

    def inside(boxes):
        return float(
            ((aspects(boxes) >= RATIO[0] - 1e-9) & (aspects(boxes) <= RATIO[1] + 1e-9))
            .float()
            .mean()
        )

    assert inside(free.boxes) < 0.6
    assert inside(decoupled.boxes) == 1.0


@pytest.mark.parametrize(
    ("params", "field", "valid"),
    [
        ({"overlap": 0.6, "crop_area": (0.5, 0.5)}, "overlap.overlap", "(0.1423, 0.5000)"),
        ({"overlap": 0.1, "crop_area": (0.5, 0.5)}, "overlap.overlap", "(0.1423, 0.5000)"),
        ({"overlap": 0.3, "crop_area": (0.6, 0.3)}, "overlap.crop_area", "0 < low <= high <= 1"),
        ({"overlap": 0.3, "crop_ratio": (2.0, 1.0)}, "overlap.crop_ratio", "0 < low <= high"),
    ],
)
def test_infeasible_overlaps_name_the_field_the_value_and_the_feasible_range(params, field, valid):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as error:
        make_views("overlap", **params)
    assert error.value.field == field and valid in str(error.value)


def test_the_training_config_checks_the_overlap_on_its_datasets_images():
    """Square crops cover at most 0.75 of COCO's 480x640 images, and all of CIFAR's."""
    views = {"family": "overlap", "params": {"overlap": 0.8, "crop_ratio": [0.75, 1.0]}}
    TrainConfig.from_dict(
        {
            "data": {"dataset": "coco"},
            "views": {**views, "params": {"overlap": 0.7, "crop_ratio": [0.75, 1.0]}},
        }
    )
    with pytest.raises(ConfigError) as error:
        TrainConfig.from_dict({"data": {"dataset": "coco"}, "views": views})
    assert error.value.field == "views.params.overlap" and error.value.value == 0.8
    assert "480x640" in str(error.value) and "at most 0.7500" in str(error.value)
    TrainConfig.from_dict({"data": {"dataset": "cifar10"}, "views": views})


def test_rows_without_a_pair_fall_back_to_free_crops_with_the_exact_overlap():
    """Next to the range's end few draws admit the overlap: every row still shares it exactly."""
    lowest, highest = feasible_overlap_range((0.5, 0.5), RATIO, 96, 96)
    sampler = make_views("overlap", overlap=highest - 1e-4, crop_area=(0.5, 0.5))
    geometry = sampler.sample(256, 96, 96, torch.Generator().manual_seed(0))
    assert torch.allclose(
        geometry.overlap, torch.full_like(geometry.overlap, highest - 1e-4), atol=1e-9
    )


def test_pairs_are_reproducible_from_the_generator():
    def draw():
        return sample_overlapping_pairs(
            32, 64, 80, 0.3, (0.3, 1.0), RATIO, torch.Generator().manual_seed(5)
        )[0]

    assert torch.equal(draw(), draw())


@pytest.mark.parametrize("gap", exclusive_space.GRID_GAPS)
@pytest.mark.parametrize(("height", "width"), [(32, 32), (96, 96), (64, 64)])
def test_every_exclusive_grid_point_keeps_a_random_shape_and_distance(gap, height, width):
    """Aspect ratios within [3/4, 4/3] with real spread, and a centre distance that varies."""
    sampler = make_views("exclusive", gap=gap, crop=exclusive_space.CROP_AREA)
    geometry = sampler.sample(4000, height, width, torch.Generator().manual_seed(0))
    ratio = aspects(geometry.boxes)
    assert (ratio >= RATIO[0] - 1e-9).all() and (ratio <= RATIO[1] + 1e-9).all()
    log_aspect = ratio.log().abs()
    assert float(log_aspect.quantile(0.95) - log_aspect.quantile(0.05)) > 0.1
    phi = geometry.phi
    assert float(phi.quantile(0.95) - phi.quantile(0.05)) > 0.02, (
        "the centre distance is not pinned"
    )


def test_a_gap_that_would_pin_the_crops_is_refused_with_the_largest_that_does_not():
    """The crops of 0.2 and gap 0.3 the landed grid used: stretched 2.45x and at one distance."""
    with pytest.raises(ConfigError) as error:
        make_views("exclusive", gap=0.3, crop=0.2)
    assert error.value.field == "exclusive.gap" and "(0, 0.0472]" in str(error.value)
    largest = largest_exclusive_gap(0.1, RATIO)
    make_views("exclusive", gap=largest, crop=0.1)
    with pytest.raises(ConfigError, match=r"exclusive\.gap"):
        make_views("exclusive", gap=largest + 1e-6, crop=0.1)


def test_the_training_config_checks_the_gap_along_both_axes_of_its_images():
    """COCO's 480 px side holds less gap than a square of the same area."""
    square, coco_short = (
        largest_exclusive_gap(0.1, RATIO),
        largest_exclusive_gap(0.1, RATIO, 480, 640),
    )
    assert coco_short < square
    gap = (square + coco_short) / 2
    TrainConfig.from_dict(
        {"data": {"dataset": "cifar10"}, "views": {"family": "exclusive", "params": {"gap": gap}}}
    )
    with pytest.raises(ConfigError) as error:
        TrainConfig.from_dict(
            {"data": {"dataset": "coco"}, "views": {"family": "exclusive", "params": {"gap": gap}}}
        )
    assert error.value.field == "views.params.gap" and "480x640" in str(error.value)
