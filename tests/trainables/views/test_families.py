"""Geometry invariants of every view family, checked with hypothesis over shapes, parameters
and seeds."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from trainables.validation import ConfigError
from trainables.views import VIEW_FAMILIES, ViewGeometry, make_views
from trainables.views.boxes import box_area, box_centers, intersection_area
from trainables.views.pairs import largest_exclusive_gap

TOL = 1e-4
sides = st.integers(min_value=8, max_value=600)
seeds = st.integers(min_value=0, max_value=2**31 - 1)
fractions = st.floats(min_value=0.01, max_value=0.99)
N = 32


def sample(family, height, width, seed, **params):
    sampler = make_views(family, size=32, **params)
    return sampler.sample(N, height, width, torch.Generator().manual_seed(seed))


def assert_inside_image(geometry: ViewGeometry, height: int, width: int) -> None:
    boxes = geometry.boxes
    assert boxes.dtype == torch.float64
    assert (boxes[..., 0] >= 0).all() and (boxes[..., 1] >= 0).all()
    assert (boxes[..., 2] <= width).all() and (boxes[..., 3] <= height).all()
    assert (boxes[..., 2] > boxes[..., 0]).all() and (boxes[..., 3] > boxes[..., 1]).all()


def area_fraction(boxes, height, width):
    return box_area(boxes) / (height * width)


def aspect_ok_or_forced(boxes, height, width, ratio=(3 / 4, 4 / 3)):
    """Aspect ratio within ``ratio``, unless the box spans the image along the limiting axis."""
    aspect = (boxes[..., 2] - boxes[..., 0]) / (boxes[..., 3] - boxes[..., 1])
    in_range = (aspect >= ratio[0] - 1e-9) & (aspect <= ratio[1] + 1e-9)
    spans_width = (boxes[..., 2] - boxes[..., 0]) >= width - 1e-6
    spans_height = (boxes[..., 3] - boxes[..., 1]) >= height - 1e-6
    return (in_range | spans_width | spans_height).all()


@given(height=sides, width=sides, seed=seeds)
def test_area_first_random_crop_boxes_have_the_scale_and_ratio_asked_for(height, width, seed):
    geometry = sample("random_crop", height, width, seed, distribution="area_first")
    assert_inside_image(geometry, height, width)
    areas = area_fraction(geometry.boxes, height, width)
    assert (areas >= 0.2 - TOL).all() and (areas <= 1 + TOL).all()
    assert aspect_ok_or_forced(geometry.boxes, height, width)
    assert geometry.hole is None


@given(height=sides, width=sides, seed=seeds)
def test_torchvision_random_crop_boxes_are_whole_pixel_crops_inside_the_image(height, width, seed):
    geometry = sample("random_crop", height, width, seed, distribution="torchvision")
    assert_inside_image(geometry, height, width)
    assert torch.equal(geometry.boxes, geometry.boxes.round()), "torchvision crops whole pixels"
    areas = area_fraction(geometry.boxes, height, width)
    assert (areas <= 1 + TOL).all()
    assert geometry.hole is None


KS_BOXES = 3000
KS_CRITICAL = 1.949 * math.sqrt(2 / KS_BOXES)  # two-sample KS, alpha 0.001
KS_SIZES = [(96, 96), (375, 500), (500, 333), (37, 61), (9, 40), (40, 9), (7, 7)]


def ks_statistic(a: torch.Tensor, b: torch.Tensor) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    points = torch.cat((a, b)).sort().values
    cdf_a = torch.searchsorted(a.sort().values, points, right=True) / len(a)
    cdf_b = torch.searchsorted(b.sort().values, points, right=True) / len(b)
    return float((cdf_a - cdf_b).abs().max())


def box_statistics(boxes: torch.Tensor, height: int, width: int) -> dict[str, torch.Tensor]:
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    centres = box_centers(boxes)
    return {
        "area": w * h / (height * width),
        "aspect": w / h,
        "cx": centres[:, 0] / width,
        "cy": centres[:, 1] / height,
    }


def torchvision_boxes(height: int, width: int, seed: int) -> torch.Tensor:
    from torchvision.transforms import RandomResizedCrop

    torch.manual_seed(seed)
    image = torch.zeros(1, height, width)
    rows = []
    for _ in range(KS_BOXES):
        top, left, h, w = RandomResizedCrop.get_params(
            image, scale=[0.2, 1.0], ratio=[3 / 4, 4 / 3]
        )
        rows.append((left, top, left + w, top + h))
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize("height, width", KS_SIZES)
def test_random_crop_matches_torchvision_get_params_by_ks(height, width):
    ours = (
        make_views("random_crop", distribution="torchvision")
        .sample(KS_BOXES, height, width, torch.Generator().manual_seed(3))
        .boxes[:, 0]
    )
    reference = torchvision_boxes(height, width, seed=4)
    ours_stats, reference_stats = (
        box_statistics(ours, height, width),
        box_statistics(reference, height, width),
    )
    for name in ours_stats:
        statistic = ks_statistic(ours_stats[name], reference_stats[name])
        assert statistic < KS_CRITICAL, (
            f"{name} on {height}x{width}: KS {statistic:.3f} >= {KS_CRITICAL:.3f}"
        )


def test_the_ks_comparison_rejects_the_area_first_distribution():
    height, width = 375, 500
    wrong = (
        make_views("random_crop", distribution="area_first")
        .sample(KS_BOXES, height, width, torch.Generator().manual_seed(3))
        .boxes[:, 0]
    )
    reference = torchvision_boxes(height, width, seed=4)
    statistic = ks_statistic(
        box_statistics(wrong, height, width)["area"],
        box_statistics(reference, height, width)["area"],
    )
    assert statistic > KS_CRITICAL


def test_random_crop_falls_back_to_torchvision_centre_crop():
    from trainables.views.boxes import random_resized_crop_boxes

    # scale (1, 1) on a 10x40 image: no try fits, so every box is the centred 13x10 crop.
    boxes = random_resized_crop_boxes(
        5, 10, 40, (1.0, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(0)
    )
    assert torch.equal(
        boxes, torch.tensor([[13.0, 0.0, 26.0, 10.0]], dtype=torch.float64).expand(5, 4)
    )


@given(height=sides, width=sides, seed=seeds, overlap=fractions)
def test_overlap_intersection_is_exactly_the_parameter(height, width, seed, overlap):
    geometry = sample("overlap", height, width, seed, overlap=overlap)
    assert_inside_image(geometry, height, width)
    realised = intersection_area(geometry.boxes[:, 0], geometry.boxes[:, 1]) / (height * width)
    assert torch.allclose(realised, torch.full_like(realised, overlap), atol=TOL, rtol=0)
    assert torch.allclose(geometry.overlap, realised)
    assert (area_fraction(geometry.boxes, height, width) >= overlap - TOL).all()


def test_overlap_crops_vary_in_size_and_position():
    geometry = sample("overlap", 64, 64, 0, overlap=0.3)
    many = make_views("overlap", overlap=0.3).sample(2000, 64, 64, torch.Generator().manual_seed(1))
    areas = many.view_areas
    assert areas.min() >= 0.3 - TOL and areas.max() > 0.8
    assert areas.std() > 0.1
    assert many.distance.std() > 1.0
    assert not torch.equal(geometry.boxes[:, 0], geometry.boxes[:, 1])


@given(height=sides, width=sides, seed=seeds, patch=fractions)
def test_patch_is_whole_image_and_exact_area(height, width, seed, patch):
    geometry = sample("patch", height, width, seed, patch=patch)
    assert_inside_image(geometry, height, width)
    whole = torch.tensor([0.0, 0.0, width, height], dtype=torch.float64)
    assert torch.equal(geometry.boxes[:, 0], whole.expand(N, 4))
    areas = area_fraction(geometry.boxes[:, 1], height, width)
    assert torch.allclose(areas, torch.full_like(areas, patch), atol=TOL, rtol=0)
    assert aspect_ok_or_forced(geometry.boxes[:, 1], height, width)


def exclusive_region(box1, box2):
    """Area of the rectangle between the facing edges of two disjoint boxes, and its axis."""
    apart_x = max(box2[0] - box1[2], box1[0] - box2[2])
    apart_y = max(box2[1] - box1[3], box1[1] - box2[3])
    if apart_x > apart_y:
        shared = min(box1[3], box2[3]) - max(box1[1], box2[1])
        return apart_x * shared, shared
    shared = min(box1[2], box2[2]) - max(box1[0], box2[0])
    return apart_y * shared, shared


@given(
    height=sides,
    width=sides,
    seed=seeds,
    crop=st.floats(min_value=0.02, max_value=0.2),
    gap_share=st.floats(min_value=0.01, max_value=1.0),
)
def test_exclusive_crops_are_disjoint_equal_and_gap_is_exact(height, width, seed, crop, gap_share):
    gap = gap_share * largest_exclusive_gap(crop, (3 / 4, 4 / 3))
    geometry = sample("exclusive", height, width, seed, gap=gap, crop=crop)
    assert_inside_image(geometry, height, width)
    areas = area_fraction(geometry.boxes, height, width)
    assert torch.allclose(areas, torch.full_like(areas, crop), atol=TOL, rtol=0)
    assert torch.allclose(
        geometry.boxes[:, 0, 2:] - geometry.boxes[:, 0, :2],
        geometry.boxes[:, 1, 2:] - geometry.boxes[:, 1, :2],
    )
    assert (geometry.overlap == 0).all()
    for box1, box2 in geometry.boxes.tolist():
        region, shared = exclusive_region(box1, box2)
        assert shared > 0
        assert abs(region / (height * width) - gap) <= TOL


def test_exclusive_uses_both_axes_and_both_orders():
    geometry = make_views("exclusive", gap=0.1).sample(
        400, 64, 64, torch.Generator().manual_seed(3)
    )
    centers = box_centers(geometry.boxes)
    delta = centers[:, 1] - centers[:, 0]
    horizontal = delta[:, 0].abs() > delta[:, 1].abs()
    assert 0.35 < horizontal.double().mean() < 0.65
    assert (delta[horizontal, 0] > 0).any() and (delta[horizontal, 0] < 0).any()


@given(
    height=sides, width=sides, seed=seeds, hole=fractions, fill=st.sampled_from(["zero", "none"])
)
def test_cutout_hole_is_view_two_and_exact_area(height, width, seed, hole, fill):
    geometry = sample("cutout", height, width, seed, hole=hole, fill=fill)
    assert_inside_image(geometry, height, width)
    assert torch.equal(geometry.hole, geometry.boxes[:, 1])
    assert torch.equal(
        geometry.boxes[:, 0],
        torch.tensor([0.0, 0.0, width, height], dtype=torch.float64).expand(N, 4),
    )
    areas = area_fraction(geometry.hole, height, width)
    assert torch.allclose(areas, torch.full_like(areas, hole), atol=TOL, rtol=0)


@pytest.mark.parametrize("family", sorted(VIEW_FAMILIES))
def test_single_geometry_api_and_distance(family):
    sampler = make_views(family, size=32)
    geometry = sampler.geometry(40, 56, torch.Generator().manual_seed(0))
    assert geometry.boxes.shape == (2, 4)
    expected = math.dist(
        (
            (geometry.boxes[0, 0] + geometry.boxes[0, 2]) / 2,
            (geometry.boxes[0, 1] + geometry.boxes[0, 3]) / 2,
        ),
        (
            (geometry.boxes[1, 0] + geometry.boxes[1, 2]) / 2,
            (geometry.boxes[1, 1] + geometry.boxes[1, 3]) / 2,
        ),
    )
    assert float(geometry.distance) == pytest.approx(expected)
    assert float(geometry.phi) == pytest.approx(expected / math.hypot(40, 56))
    assert (geometry.hole is None) == (family != "cutout")


@pytest.mark.parametrize("family", sorted(VIEW_FAMILIES))
def test_same_seed_same_geometry(family):
    sampler = make_views(family)
    first = sampler.sample(8, 50, 70, torch.Generator().manual_seed(5))
    again = sampler.sample(8, 50, 70, torch.Generator().manual_seed(5))
    other = sampler.sample(8, 50, 70, torch.Generator().manual_seed(6))
    assert torch.equal(first.boxes, again.boxes)
    assert not torch.equal(first.boxes, other.boxes)


@pytest.mark.parametrize(
    ("family", "params", "field", "valid"),
    [
        ("overlap", {"overlap": 1.0}, "overlap.overlap", "(0, 1)"),
        ("overlap", {"overlap": 0.0}, "overlap.overlap", "(0, 1)"),
        ("overlap", {"overlap": -0.2}, "overlap.overlap", "(0, 1)"),
        ("overlap", {"overlap": float("nan")}, "overlap.overlap", "(0, 1)"),
        ("patch", {"patch": 1.5}, "patch.patch", "(0, 1)"),
        ("exclusive", {"gap": 0.3, "crop": 0.2}, "exclusive.gap", "(0, 0.0472]"),
        ("exclusive", {"crop": 0.5}, "exclusive.crop", "(0, 0.5)"),
        ("cutout", {"hole": 0.0}, "cutout.hole", "(0, 1)"),
        ("cutout", {"fill": "gray"}, "cutout.fill", "'blur'"),
        ("cutout", {"blur": 0.4, "hole": 0.05, "fill": "blur"}, "cutout.blur", "blur >= 0.4842"),
        (
            "cutout",
            {"blur": 1.0, "hole": 0.003, "fill": "blur"},
            "cutout.blur",
            "a larger hole or view size",
        ),
        ("cutout", {"blur": 1.5, "hole": 0.3, "fill": "blur"}, "cutout.blur", "(0, 1]"),
        ("cutout", {"blur": 0.0, "hole": 0.3, "fill": "blur"}, "cutout.blur", "(0, 1]"),
        ("random_crop", {"scale": (0.5, 0.2)}, "random_crop.scale", "low <= high"),
        ("random_crop", {"distribution": "exact"}, "random_crop.distribution", "'torchvision'"),
        ("overlap", {"overlp": 0.3}, "overlap.overlp", "overlap"),
    ],
)
def test_unsatisfiable_parameters_name_field_value_and_range(family, params, field, valid):
    with pytest.raises(ConfigError) as error:
        make_views(family, **params)
    message = str(error.value)
    assert field in message and valid in message
    assert repr(next(iter(params.values()))) in message or "nan" in message


def test_unknown_family_lists_the_families():
    with pytest.raises(ConfigError, match="views.family='zoom'.*'overlap'"):
        make_views("zoom")


def test_geometry_rejects_empty_images():
    with pytest.raises(ConfigError, match="height=0"):
        make_views("patch").geometry(0, 10)


def test_stack_and_index_round_trip():
    sampler = make_views("cutout", hole=0.2)
    generator = torch.Generator().manual_seed(0)
    singles = [sampler.geometry(32, 48, generator) for _ in range(3)]
    batch = ViewGeometry.stack(singles)
    assert batch.boxes.shape == (3, 2, 4) and len(batch) == 3
    assert torch.equal(batch[1].hole, singles[1].hole)
    assert torch.allclose(batch.distance, torch.stack([g.distance for g in singles]))
