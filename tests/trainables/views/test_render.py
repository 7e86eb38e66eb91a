"""Pixels match boxes: views of an image whose channels encode each pixel's x and y centre."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from trainables.views import VIEW_FAMILIES, make_views
from trainables.views.render import crop_resize, crop_resize_one, hole_mask

SIZE = 16


def coordinate_image(height: int, width: int) -> torch.Tensor:
    """``(2, H, W)``: channel 0 is the pixel centre's x, channel 1 its y."""
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    return torch.stack((xs, ys)).double()


def expected_coordinates(box, size):
    """The centres of the ``size x size`` bins of ``box``: x per column and y per row."""
    steps = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    return box[0] + steps * (box[2] - box[0]), box[1] + steps * (box[3] - box[1])


def assert_view_matches_box(view, box, height, width):
    """Bilinear sampling of a linear image is exact, except within half a pixel of the border
    where sampling clamps to the outermost pixel centre."""
    xs, ys = expected_coordinates(box, view.shape[-1])
    got_x, got_y = view[0], view[1]
    assert torch.allclose(got_x, xs[None, :].expand_as(got_x), atol=0.5 + 1e-6)
    assert torch.allclose(got_y, ys[:, None].expand_as(got_y), atol=0.5 + 1e-6)
    bin_w = (box[2] - box[0]) / view.shape[-1]
    bin_h = (box[3] - box[1]) / view.shape[-1]
    interior_x = (xs - bin_w / 2 >= 0.5) & (xs + bin_w / 2 <= width - 0.5)
    interior_y = (ys - bin_h / 2 >= 0.5) & (ys + bin_h / 2 <= height - 0.5)
    assert torch.allclose(
        got_x[:, interior_x], xs[interior_x].expand(view.shape[-1], -1), atol=1e-6
    )
    assert torch.allclose(
        got_y[interior_y, :], ys[interior_y, None].expand(-1, view.shape[-1]), atol=1e-6
    )


PARAMS = {
    "random_crop": {},
    "overlap": {"overlap": 0.3},
    "patch": {"patch": 0.3},
    "exclusive": {"gap": 0.1},
    "cutout": {"hole": 0.3, "fill": "none"},
}


@pytest.mark.parametrize("family", sorted(VIEW_FAMILIES))
@given(height=st.integers(8, 120), width=st.integers(8, 120), seed=st.integers(0, 10_000))
def test_view_pixels_come_from_their_box(family, height, width, seed):
    sampler = make_views(family, size=SIZE, **PARAMS[family])
    image = coordinate_image(height, width)
    view1, view2, geometry = sampler(image, torch.Generator().manual_seed(seed))
    assert view1.shape == view2.shape == (2, SIZE, SIZE)
    assert_view_matches_box(view1, geometry.boxes[0], height, width)
    assert_view_matches_box(view2, geometry.boxes[1], height, width)


def test_uint8_images_give_uint8_views_of_the_requested_size():
    image = torch.randint(0, 256, (3, 40, 30), dtype=torch.uint8)
    view1, view2, _ = make_views("overlap", overlap=0.4, size=24)(
        image, torch.Generator().manual_seed(0)
    )
    assert view1.dtype == view2.dtype == torch.uint8
    assert view1.shape == view2.shape == (3, 24, 24)


def test_crop_of_whole_image_at_native_size_is_identity():
    image = torch.randint(0, 256, (2, 3, 20, 20), dtype=torch.uint8)
    boxes = torch.tensor([[0.0, 0.0, 20.0, 20.0]] * 2, dtype=torch.float64)
    assert torch.equal(crop_resize(image, boxes, 20), image)


# Both crop-and-resize paths, roi_align (batched) and grid_sample (per sample), on the same boxes.
DTYPES = (torch.float32, torch.float64, torch.uint8)
FLOAT_ATOL = 1e-4 * 255


def random_images(count, height, width, dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        return torch.randint(0, 256, (count, 3, height, width), dtype=dtype, generator=generator)
    return (torch.rand(count, 3, height, width, generator=generator) * 255).to(dtype)


def assert_same_views(batched, single):
    """Equal up to float rounding; uint8 views may round a level apart."""
    assert batched.shape == single.shape and batched.dtype == single.dtype
    if batched.dtype == torch.uint8:
        assert (batched.int() - single.int()).abs().max() <= 1
    else:
        assert torch.allclose(batched, single, atol=FLOAT_ATOL, rtol=0)


def box_inside(width, height, corners):
    """A box of ``[0, width] x [0, height]`` from four fractions, at least 0.1 px on each side
    (fractions 0 and 1 put it on the image border)."""
    fx0, fx1, fy0, fy1 = corners
    x0 = fx0 * (width - 0.1)
    y0 = fy0 * (height - 0.1)
    x1 = x0 + 0.1 + fx1 * (width - 0.1 - x0)
    y1 = y0 + 0.1 + fy1 * (height - 0.1 - y0)
    return [x0, y0, x1, y1]


fractions = st.floats(0, 1)


@given(
    height=st.integers(12, 80),
    width=st.integers(12, 80),
    size=st.integers(4, 40),
    dtype=st.sampled_from(DTYPES),
    corners=st.lists(st.tuples(fractions, fractions, fractions, fractions), min_size=3, max_size=3),
    seed=st.integers(0, 10_000),
)
def test_per_sample_crop_resize_equals_batched(height, width, size, dtype, corners, seed):
    images = random_images(len(corners), height, width, dtype, seed)
    boxes = torch.tensor([box_inside(width, height, c) for c in corners], dtype=torch.float64)
    batched = crop_resize(images, boxes, size)
    for image, box, view in zip(images, boxes, batched):
        assert_same_views(view, crop_resize_one(image, box, size))


@pytest.mark.parametrize(
    ("box", "size"),
    [
        ([0.0, 0.0, 37.0, 23.0], 37),  # whole image, one sample per bin
        ([0.0, 0.0, 37.0, 23.0], 5),  # whole image, 8 x 5 samples per bin
        ([2.5, 1.5, 3.5, 22.5], 40),  # 1 px wide, upsampled 40 times
        ([0.1, 0.3, 36.9, 22.9], 6),  # bins just over an integer width
        ([30.0, 0.0, 37.0, 6.0], 14),  # on the right and top borders
        ([1.023, 0.0, 16.023, 23.0], 5),  # 3 px bins, just over 3 in float32: 4 samples each
    ],
)
def test_per_sample_crop_resize_edge_cases(box, size):
    images = random_images(1, 23, 37, torch.float32, 0)
    box = torch.tensor(box, dtype=torch.float64)
    assert_same_views(
        crop_resize(images, box[None], size)[0], crop_resize_one(images[0], box, size)
    )


def test_per_sample_crop_of_whole_image_at_native_size_is_identity():
    image = torch.randint(0, 256, (3, 20, 20), dtype=torch.uint8)
    assert torch.equal(crop_resize_one(image, torch.tensor([0.0, 0.0, 20.0, 20.0]), 20), image)
    # Columns: one sample per bin, on the pixel centres; rows: the mean of 2 samples per bin.
    shifted = crop_resize_one(image.double(), torch.tensor([1.0, 0.0, 11.0, 20.0]), 10)
    columns = image[:, :, 1:11].double()
    assert torch.allclose(shifted, (columns[:, 0::2] + columns[:, 1::2]) / 2, atol=1e-9, rtol=0)


RENDER_PARAMS = [
    ("random_crop", {}),
    ("overlap", {"overlap": 0.3}),
    ("patch", {"patch": 0.3}),
    ("exclusive", {"gap": 0.1}),
    ("cutout", {"hole": 0.3, "fill": "zero"}),
    ("cutout", {"hole": 0.3, "fill": "blur", "blur": 1.0}),
    ("cutout", {"hole": 0.3, "fill": "blur", "blur": 0.5}),
    ("cutout", {"hole": 0.3, "fill": "none"}),
]


def test_render_params_cover_every_family():
    assert {family for family, _ in RENDER_PARAMS} == set(VIEW_FAMILIES)


@pytest.mark.parametrize(
    ("family", "params"),
    RENDER_PARAMS,
    ids=lambda v: v if isinstance(v, str) else "-".join(map(str, v.values())),
)
@given(
    height=st.integers(12, 80),
    width=st.integers(12, 80),
    size=st.sampled_from([16, 24, 40]),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 10_000),
)
def test_family_renders_the_same_views_batched_and_per_sample(
    family, params, height, width, size, dtype, seed
):
    sampler = make_views(family, size=size, **params)
    images = random_images(3, height, width, dtype, seed)
    geometry = sampler.sample(3, height, width, torch.Generator().manual_seed(seed))
    view1, view2 = sampler.render(images, geometry)
    for index in range(3):
        single1, single2 = sampler.render_one(images[index], geometry[index])
        assert_same_views(view1[index], single1)
        assert_same_views(view2[index], single2)


@pytest.mark.parametrize("family", sorted(VIEW_FAMILIES))
def test_calling_a_sampler_renders_per_sample_what_batch_renders(family, monkeypatch):
    sampler = make_views(family, size=SIZE)
    image = random_images(1, 30, 44, torch.uint8, 1)[0]
    view1, view2, geometry = sampler.batch(image[None], torch.Generator().manual_seed(4))
    monkeypatch.setattr(
        "trainables.views.sampler.crop_resize", None
    )  # the batched path is not used
    single1, single2, single_geometry = sampler(image, torch.Generator().manual_seed(4))
    assert torch.equal(single_geometry.boxes, geometry.boxes[0])
    assert_same_views(view1[0], single1)
    assert_same_views(view2[0], single2)


def test_hole_mask_covers_exactly_the_hole_area():
    holes = torch.tensor([[3.3, 5.1, 17.9, 12.2], [0.0, 0.0, 32.0, 32.0]], dtype=torch.float64)
    frames = torch.tensor([[0.0, 0.0, 32.0, 32.0]] * 2, dtype=torch.float64)
    mask = hole_mask(holes, frames, 16)
    expected = (holes[:, 2] - holes[:, 0]) * (holes[:, 3] - holes[:, 1]) / 4
    assert torch.allclose(mask.sum(dim=(1, 2, 3)), expected)
    assert mask.min() >= 0 and mask.max() <= 1


@given(seed=st.integers(0, 10_000), hole=st.floats(0.1, 0.6))
def test_cutout_fills_only_the_hole(seed, hole):
    image = torch.rand(3, 32, 32) * 200 + 20
    plain = make_views("cutout", hole=hole, fill="none", size=32)
    zero = make_views("cutout", hole=hole, fill="zero", size=32)
    blur = make_views("cutout", hole=hole, fill="blur", blur=1.0, size=32)
    views = [sampler(image, torch.Generator().manual_seed(seed)) for sampler in (plain, zero, blur)]
    (untouched, patch, geometry), (blacked, patch_zero, _), (blurred, patch_blur, _) = views
    assert torch.allclose(untouched, image, atol=1e-5)
    assert torch.equal(patch, patch_zero) and torch.equal(patch, patch_blur)
    mask = hole_mask(geometry.hole[None], geometry.boxes[None, 0], 32)[0, 0]
    inside, outside = mask == 1, mask == 0
    assert inside.any()
    assert (blacked[:, inside] == 0).all()
    assert torch.allclose(blacked[:, outside], image[:, outside])
    assert torch.allclose(blurred[:, outside], image[:, outside])
    assert not torch.allclose(blurred[:, inside], image[:, inside])
    assert (blurred[:, inside] > 0).all()


def test_blur_smooths_the_hole():
    image = torch.zeros(1, 32, 32)
    image[:, :, ::2] = 255.0
    sampler = make_views("cutout", hole=0.5, fill="blur", blur=1.0, size=32)
    filled, _, geometry = sampler(image, torch.Generator().manual_seed(0))
    inside = hole_mask(geometry.hole[None], geometry.boxes[None, 0], 32)[0, 0] == 1
    assert filled[0][inside].std() < 0.2 * image[0][inside].std()
