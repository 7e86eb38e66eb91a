"""Cutout-blur: a per-sample Gaussian whose window spans ``blur`` of the hole's real shorter
side."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torchvision.transforms.v2 import functional as TF

from trainables.views import make_views
from trainables.views.boxes import (
    box_height,
    box_width,
    sample_boxes_of_area,
    shortest_side_on_square,
)
from trainables.views.render import (
    gaussian_blur_per_sample,
    hole_mask,
    hole_shorter_side,
    relative_blur,
)

RATIO = (3 / 4, 4 / 3)


@given(
    sides=st.lists(st.integers(1, 7).map(lambda half: 2 * half + 1), min_size=1, max_size=4),
    sigma_scale=st.floats(0.05, 1.5),
    height=st.integers(16, 40),
    width=st.integers(16, 40),
    seed=st.integers(0, 1000),
)
def test_per_sample_blur_is_torchvision_gaussian_blur_of_each_sample(
    sides, sigma_scale, height, width, seed
):
    images = torch.rand(len(sides), 3, height, width, generator=torch.Generator().manual_seed(seed))
    kernel_sizes = torch.tensor(sides)
    sigmas = kernel_sizes.double() * sigma_scale / 3
    blurred = gaussian_blur_per_sample(images, kernel_sizes, sigmas)
    for index, (side, sigma) in enumerate(zip(sides, sigmas.tolist())):
        expected = TF.gaussian_blur(images[index], kernel_size=[side, side], sigma=[sigma, sigma])
        assert torch.allclose(blurred[index], expected, atol=1e-5, rtol=0)


@given(blur=st.floats(0.01, 1.0), side=st.floats(0.5, 200.0))
def test_kernel_is_the_largest_odd_side_within_the_blur_extent(blur, side):
    (kernel,), (sigma,) = relative_blur(blur, torch.tensor([side], dtype=torch.float64))
    extent = blur * side
    assert int(kernel) % 2 == 1 and int(kernel) >= 3
    assert int(kernel) <= max(extent, 3) and (int(kernel) + 2 > extent or int(kernel) == 3)
    assert float(sigma) == pytest.approx(extent / 6)


@given(hole=st.floats(0.01, 0.99), side=st.integers(4, 300), seed=st.integers(0, 1000))
def test_shortest_side_on_square_bounds_the_sampled_holes_and_is_reached(hole, side, seed):
    boxes = sample_boxes_of_area(hole, 4000, side, side, RATIO, torch.Generator().manual_seed(seed))
    shorter = torch.minimum(box_width(boxes), box_height(boxes)) / side
    bound = shortest_side_on_square(hole, RATIO)
    assert float(shorter.min()) >= bound * (1 - 1e-9)
    assert float(shorter.min()) <= bound * 1.01, "aspects near the ends of the ratio are drawn"


def test_shortest_side_on_square_known_values():
    assert shortest_side_on_square(0.3, RATIO) == pytest.approx(math.sqrt(0.3 * 3 / 4))
    assert shortest_side_on_square(0.3, (1.0, 2.0)) == pytest.approx(math.sqrt(0.3 / 2))
    assert shortest_side_on_square(0.3, (0.25, 0.5)) == pytest.approx(math.sqrt(0.3 * 0.3)), (
        "aspect clamped to fit"
    )
    assert shortest_side_on_square(0.8, (0.1, 10.0)) == pytest.approx(0.8), (
        "a wide box of 0.8 is clamped to the full width"
    )


def test_hole_shorter_side_is_the_hole_in_output_pixels():
    holes = torch.tensor([[2.0, 4.0, 12.0, 9.0], [0.0, 0.0, 30.0, 20.0]], dtype=torch.float64)
    frames = torch.tensor([[0.0, 0.0, 40.0, 20.0], [0.0, 0.0, 30.0, 40.0]], dtype=torch.float64)
    assert hole_shorter_side(holes, frames, 16).tolist() == pytest.approx(
        [10 * 16 / 40, 20 * 16 / 40]
    )


@pytest.mark.parametrize(("height", "width"), [(32, 32), (24, 48), (50, 30)])
@pytest.mark.parametrize("blur", [0.5, 1.0])
def test_each_hole_is_blurred_with_the_kernel_of_its_real_shorter_side(height, width, blur):
    sampler = make_views("cutout", size=32, hole=0.4, fill="blur", blur=blur)
    images = torch.rand(6, 3, height, width, generator=torch.Generator().manual_seed(3)) * 255
    geometry = sampler.sample(6, height, width, torch.Generator().manual_seed(5))
    filled, _ = sampler.render(images, geometry)
    plain = make_views("cutout", size=32, hole=0.4, fill="none").render(images, geometry)[0]
    masks = hole_mask(geometry.hole, geometry.boxes[:, 0], 32)
    for index in range(6):
        hole, frame = geometry.hole[index], geometry.boxes[index, 0]
        side = (
            min(
                float(box_width(hole) / box_width(frame)),
                float(box_height(hole) / box_height(frame)),
            )
            * 32
        )
        kernel = max(3, 2 * math.floor((blur * side - 1) / 2) + 1)
        sigma = blur * side / 6
        expected = TF.gaussian_blur(
            plain[index], kernel_size=[kernel, kernel], sigma=[sigma, sigma]
        )
        inside = masks[index, 0] == 1
        assert torch.allclose(filled[index][:, inside], expected[:, inside], atol=1e-3)


def stripes(count, size):
    """Vertical stripes 4 px wide: structure much finer than the hole, much coarser than a pixel."""
    image = torch.zeros(count, 3, size, size)
    image[..., (torch.arange(size) // 4) % 2 == 0] = 255.0
    return image


def mean_change_inside(blur, hole=0.4, size=32):
    sampler = make_views("cutout", size=size, hole=hole, fill="blur", blur=blur)
    images = stripes(16, size)
    geometry = sampler.sample(16, size, size, torch.Generator().manual_seed(0))
    filled, _ = sampler.render(images, geometry)
    inside = hole_mask(geometry.hole, geometry.boxes[:, 0], size) == 1
    return float((filled - images).abs().masked_select(inside).mean())


def test_a_stronger_blur_changes_the_hole_more_at_each_view_size():
    for size in (16, 32, 64):
        assert mean_change_inside(1.0, size=size) > mean_change_inside(0.5, size=size) > 0
    assert mean_change_inside(1.0, size=32) > 40, "a whole-hole blur removes most of the stripes"
