import re

import numpy as np
import pytest
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.text import Text
from PIL import Image

from dashboards.gallery import (
    PairStats,
    build_family_gallery_figure,
    build_view_pairs_figure,
    draw_family_gallery,
    draw_view_pairs,
    pair_panels,
    rectangle_of,
    sampler_label,
    view_pairs,
    wrap_items,
)
from trainables.recipes import recipe
from trainables.validation import ConfigError
from trainables.views import make_views

FAMILIES = {
    "random_crop": {},
    "overlap": {"overlap": 0.3},
    "patch": {"patch": 0.3},
    "exclusive": {"gap": 0.1, "crop": 0.1},
    "cutout": {"hole": 0.3, "fill": "blur"},
}
GALLERY = [
    ("overlap", {"overlap": 0.2}),
    ("overlap", {"overlap": 0.6}),
    ("patch", {"patch": 0.3}),
    ("cutout", {"hole": 0.3, "fill": "blur"}),
]
TITLE = re.compile(
    r"overlap (?P<overlap>[\d.]+) · distance (?P<distance>[\d.]+) px · φ (?P<phi>[\d.]+)"
)


def digits_config(family, params, **overrides):
    return recipe("digits", **{"views.family": family, "views.params": params, **overrides})


def write_coco(root, sizes):
    folder = root / "coco" / "train2017"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index, (height, width) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
            folder / f"{index:012d}.png"
        )
    return root


def assert_drawn_png(path, min_width, min_height):
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= min_width and image.height >= min_height
        pixels = np.asarray(image.convert("RGB"))
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 50, "the image is (nearly) blank"


def source_axes(figure: Figure) -> list[Axes]:
    return [axes for axes in figure.findobj(Axes) if axes.get_gid() == "source"]


def rectangles_by_gid(axes: Axes) -> dict[str, Rectangle]:
    return {patch.get_gid(): patch for patch in axes.patches if isinstance(patch, Rectangle)}


def figure_texts(figure: Figure) -> list[str]:
    return [text.get_text() for text in figure.findobj(Text)]


def assert_rectangle_covers(rectangle: Rectangle, box):
    x0, y0, x1, y1 = box.tolist()
    assert rectangle.get_xy() == pytest.approx((x0, y0), abs=1e-9)
    assert rectangle.get_width() == pytest.approx(x1 - x0, abs=1e-9)
    assert rectangle.get_height() == pytest.approx(y1 - y0, abs=1e-9)


@pytest.mark.parametrize("family", FAMILIES)
def test_draw_view_pairs_writes_a_drawn_png_for_every_family(tmp_path, family):
    path = draw_view_pairs(
        digits_config(family, FAMILIES[family]), tmp_path / "out" / f"{family}.png", count=1
    )
    assert path == tmp_path / "out" / f"{family}.png"
    assert_drawn_png(path, min_width=600, min_height=250)


def test_draw_view_pairs_on_digit_scenes(tmp_path):
    config = recipe("digits", **{"data.dataset": "digit-scenes", "views.size": 32})
    sources, batch = view_pairs(config, count=2)
    assert [tuple(source.shape) for source in sources] == [(3, 64, 64)] * 2
    assert batch.view1.shape == (2, 3, 32, 32)
    assert_drawn_png(draw_view_pairs(config, tmp_path / "scenes.png", count=2), 600, 2 * 250)


def test_view_pairs_samples_each_image_with_the_configs_sampler():
    config = digits_config("overlap", {"overlap": 0.3})
    sources, batch = view_pairs(config, count=5, seed=3)
    assert len(sources) == len(batch) == 5
    assert batch.view1.dtype == torch.uint8 and batch.view2.shape == (5, 3, 16, 16)
    assert not batch.flipped.any()
    assert torch.allclose(batch.geometry.overlap, torch.full((5,), 0.3, dtype=torch.float64))
    first = config.views.build().geometry(32, 32, torch.Generator().manual_seed(3))
    assert torch.equal(batch.geometry.boxes[0], first.boxes)


def test_view_pairs_handles_images_of_different_sizes(tmp_path):
    sizes = [(40, 60), (64, 48), (33, 90)]
    config = recipe(
        "digits", **{"data.dataset": "coco", "data.root": str(write_coco(tmp_path, sizes))}
    )
    sources, batch = view_pairs(config, count=10)
    assert [tuple(source.shape[1:]) for source in sources] == sizes
    assert batch.geometry.image_size.tolist() == [list(size) for size in sizes]
    figure = build_view_pairs_figure(config, count=3)
    extents = [tuple(axes.images[0].get_extent()) for axes in source_axes(figure)]
    assert extents == [(0, width, height, 0) for height, width in sizes]


def test_photometric_recipe_changes_pixels_not_the_first_geometry():
    config = digits_config("patch", {"patch": 0.3})
    _, plain = view_pairs(config, count=6, seed=1)
    _, augmented = view_pairs(config, count=6, seed=1, photometric=True)
    assert torch.equal(plain.geometry.boxes[0], augmented.geometry.boxes[0])
    assert not torch.equal(plain.view2, augmented.view2)


def test_view_pairs_rejects_a_non_positive_count():
    with pytest.raises(ConfigError, match="count"):
        view_pairs(digits_config("patch", {}), count=0)


def test_pair_panels_titles_and_boxes_follow_the_geometry():
    sources, batch = view_pairs(digits_config("cutout", FAMILIES["cutout"]), count=4, seed=2)
    panels = pair_panels(sources, batch)
    assert len(panels) == 4
    for index, panel in enumerate(panels):
        geometry = batch.geometry[index]
        printed = TITLE.fullmatch(panel.title)
        assert printed is not None, panel.title
        assert printed["overlap"] == f"{float(geometry.overlap):.2f}"
        assert float(printed["distance"]) == pytest.approx(float(geometry.distance), abs=0.05)
        assert float(printed["phi"]) == pytest.approx(float(geometry.phi), abs=0.005)
        assert panel.stats == PairStats.of(geometry)
        assert panel.boxes == tuple(tuple(box) for box in geometry.boxes.tolist())
        assert panel.hole == tuple(geometry.hole.tolist())
        assert panel.image_size == (32, 32)
        assert np.array_equal(panel.view1, batch.view1[index].permute(1, 2, 0).numpy())


def test_rectangle_of_spans_the_box():
    assert rectangle_of((1.5, 2.0, 10.25, 6.0)) == ((1.5, 2.0), 8.75, 4.0)


@pytest.mark.parametrize("family", ["overlap", "cutout"])
def test_figure_rectangles_match_the_geometry(family):
    config = digits_config(family, FAMILIES[family])
    _, batch = view_pairs(config, count=3, seed=5)
    figure = build_view_pairs_figure(config, count=3, seed=5)
    rows = source_axes(figure)
    assert len(rows) == 3
    for index, axes in enumerate(rows):
        geometry = batch.geometry[index]
        rectangles = rectangles_by_gid(axes)
        assert set(rectangles) == (
            {"view1", "view2", "hole"} if family == "cutout" else {"view1", "view2"}
        )
        assert_rectangle_covers(rectangles["view1"], geometry.boxes[0])
        assert_rectangle_covers(rectangles["view2"], geometry.boxes[1])
        if family == "cutout":
            assert_rectangle_covers(rectangles["hole"], geometry.hole)
        assert tuple(axes.images[0].get_extent()) == (0, 32, 32, 0)
        assert PairStats.of(geometry).title in figure_texts(figure)
    title = figure.get_suptitle()
    assert family in title and "digits" in title
    for name, value in FAMILIES[family].items():
        assert f"{name}={value}" in title


def test_family_gallery_has_one_labelled_block_per_entry(tmp_path):
    figure = build_family_gallery_figure(GALLERY, size=32, count=2)
    texts = figure_texts(figure)
    for family, params in GALLERY:
        assert sampler_label(make_views(family, size=32, **params)) in texts
    assert len(source_axes(figure)) == len(GALLERY) * 2
    path = draw_family_gallery(GALLERY[:2], tmp_path / "gallery.png", size=32, count=1)
    assert_drawn_png(path, 600, 2 * 250)


def test_family_gallery_needs_an_entry(tmp_path):
    with pytest.raises(ValueError, match="family_params"):
        draw_family_gallery([], tmp_path / "empty.png")


def test_sampler_label_wraps_between_parameters_only():
    label = sampler_label(make_views("cutout", size=16, hole=0.3, fill="blur"))
    assert label.splitlines()[0] == "cutout, 16 px views"
    assert "ratio=(0.75, 1.333)" in label and "hole=0.3" in label and "fill=blur" in label
    assert (
        wrap_items(["a" * 10, "b" * 10, "c" * 10], width=22)
        == "aaaaaaaaaa, bbbbbbbbbb,\ncccccccccc"
    )


def test_same_seed_gives_identical_png_bytes(tmp_path):
    config = digits_config("exclusive", FAMILIES["exclusive"])
    first = draw_view_pairs(config, tmp_path / "a.png", count=2, seed=7).read_bytes()
    second = draw_view_pairs(config, tmp_path / "b.png", count=2, seed=7).read_bytes()
    other = draw_view_pairs(config, tmp_path / "c.png", count=2, seed=8).read_bytes()
    assert first == second
    assert first != other
