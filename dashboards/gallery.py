"""Galleries of sampled view pairs: each source image with both views' boxes, and the views.

Computing what to draw (:func:`view_pairs`, :func:`pair_panels`, :func:`rectangle_of`,
:class:`PairStats`, :func:`sampler_label`) is kept apart from drawing it (:func:`draw_pair_row`
and the figure builders), so that the former can be tested against the geometry directly.

Coordinates: a source image of ``H x W`` pixels is shown with ``imshow(..., extent=(0, W, H, 0))``,
so pixel ``(i, j)`` covers ``[j, j + 1] x [i, i + 1]`` in data coordinates: exactly the continuous
pixel coordinates of :class:`~trainables.views.ViewGeometry` boxes (see
:mod:`trainables.views.boxes`). A box ``x0, y0, x1, y1`` is then drawn as a ``Rectangle`` at
``(x0, y0)`` of width ``x1 - x0`` and height ``y1 - y0``, and its edges fall on pixel edges
wherever the box's do.

Figures are built with the object-oriented :class:`~matplotlib.figure.Figure` API on an Agg
canvas, never through pyplot: nothing registers them globally, so nothing needs closing and
nothing leaks once a figure goes out of scope; no display is needed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure, FigureBase
from matplotlib.patches import Rectangle
from torch import Tensor

from trainables.config import DataConfig, TrainConfig, ViewConfig
from trainables.data import get_dataset
from trainables.photometric import PhotometricConfig
from trainables.pipeline import TwoViewTransform, ViewBatch, collate_view_batches
from trainables.validation import check_range
from trainables.views import ViewGeometry, ViewSampler

Box = tuple[float, float, float, float]

DPI = 150
PANEL_INCHES = 1.7
ROW_TITLE_INCHES = 0.45
FIGURE_TITLE_INCHES = 0.8
LABEL_LINE_CHARS = 48
BLOCK_LABEL_INCHES = 0.5
FIGURE_TITLE_SIZE = 11
BLOCK_LABEL_SIZE = 10
ROW_TITLE_SIZE = 9
PANEL_TITLE_SIZE = 8
BOX_LINE_WIDTH = 1.8
BLOCK_EDGE_COLOUR = "0.6"
VIEW_COLOURS = ("#ff7f0e", "#17becf")
HOLE_COLOUR = "#ffe119"
HOLE_HATCH = "////"

SOURCE_GID = "source"
VIEW_GIDS = ("view1", "view2")
HOLE_GID = "hole"


@dataclass(frozen=True)
class PairStats:
    """The realised geometry of one pair as printed in its row title."""

    overlap: float
    distance: float
    phi: float

    @classmethod
    def of(cls, geometry: ViewGeometry) -> PairStats:
        """Stats of a single (unbatched) geometry."""
        return cls(float(geometry.overlap), float(geometry.distance), float(geometry.phi))

    @property
    def title(self) -> str:
        return f"overlap {self.overlap:.2f} · distance {self.distance:.1f} px · φ {self.phi:.2f}"


@dataclass(frozen=True)
class PairPanel:
    """Everything one row draws: ``(H, W, 3)`` uint8 pixels, boxes in source pixels, a title."""

    source: np.ndarray
    view1: np.ndarray
    view2: np.ndarray
    boxes: tuple[Box, Box]
    hole: Box | None
    flipped: tuple[bool, bool]
    stats: PairStats

    @property
    def title(self) -> str:
        return self.stats.title

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of the source image."""
        return self.source.shape[0], self.source.shape[1]


def view_pairs(
    config: TrainConfig, count: int = 8, seed: int = 0, photometric: bool = False
) -> tuple[list[Tensor], ViewBatch]:
    """The first ``count`` training images of ``config`` and a view pair of each.

    Returns the source images as a list of uint8 ``(3, H, W)`` tensors (image-folder datasets mix
    sizes, so they are not padded into one tensor) and a :class:`ViewBatch` of their views and
    geometry. Each image goes through the config's sampler on its own (as a DataLoader worker
    would), drawing from one ``torch.Generator`` seeded with ``seed``; the photometric recipe of
    ``config`` follows when ``photometric`` is true, else the views are exactly as rendered.
    Fewer than ``count`` images come back when the dataset has fewer.
    """
    check_range("count", count, 1, integer=True)
    dataset = get_dataset(config.data.dataset, root=config.data.root, split=config.data.train_split)
    sources = [dataset[index][0] for index in range(min(count, len(dataset)))]
    recipe = config.photometric if photometric else PhotometricConfig.none()
    transform = TwoViewTransform(config.views.build(), recipe)
    generator = torch.Generator().manual_seed(seed)
    return sources, collate_view_batches([transform(image, generator) for image in sources])


def _pixels(image: Tensor) -> np.ndarray:
    """uint8 ``(3, H, W)`` to ``(H, W, 3)`` for ``imshow``."""
    return image.permute(1, 2, 0).contiguous().numpy()


def _box(box: Tensor) -> Box:
    x0, y0, x1, y1 = (float(value) for value in box)
    return x0, y0, x1, y1


def pair_panel(source: Tensor, batch: ViewBatch, index: int) -> PairPanel:
    """What row ``index`` of ``batch`` draws, ``source`` being that row's source image."""
    geometry = batch.geometry[index]
    return PairPanel(
        source=_pixels(source),
        view1=_pixels(batch.view1[index]),
        view2=_pixels(batch.view2[index]),
        boxes=(_box(geometry.boxes[0]), _box(geometry.boxes[1])),
        hole=None if geometry.hole is None else _box(geometry.hole),
        flipped=(bool(batch.flipped[index, 0]), bool(batch.flipped[index, 1])),
        stats=PairStats.of(geometry),
    )


def pair_panels(sources: Sequence[Tensor], batch: ViewBatch) -> list[PairPanel]:
    return [pair_panel(source, batch, index) for index, source in enumerate(sources)]


def rectangle_of(box: Box) -> tuple[tuple[float, float], float, float]:
    """``(xy, width, height)`` of a ``Rectangle`` covering ``box`` in source-pixel coordinates."""
    x0, y0, x1, y1 = box
    return (x0, y0), x1 - x0, y1 - y0


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_format_value(item) for item in value) + ")"
    return str(value)


def sampler_params(sampler: ViewSampler) -> list[str]:
    """``name=value`` for every parameter of the sampler but the view size."""
    return [
        f"{field.name}={_format_value(getattr(sampler, field.name))}"
        for field in dataclasses.fields(sampler)
        if field.name != "size"
    ]


def wrap_items(items: Sequence[str], width: int = LABEL_LINE_CHARS) -> str:
    """``items`` joined by ``", "``, broken into lines of about ``width`` between items only."""
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + 2 + len(item) <= width:
            lines[-1] += ", " + item
        else:
            lines.append(item)
    return ",\n".join(lines)


def sampler_label(sampler: ViewSampler) -> str:
    """The family and view size, then its parameters on as many lines as needed."""
    return f"{sampler.family}, {sampler.size} px views\n{wrap_items(sampler_params(sampler))}"


def view_pairs_title(config: TrainConfig, photometric: bool) -> str:
    recipe = "\nwith the photometric recipe" if photometric else ""
    return f"{config.data.dataset}: {sampler_label(config.views.build())}{recipe}"


def _show(axes: Axes, pixels: np.ndarray, title: str, colour: str = "black") -> None:
    height, width = pixels.shape[:2]
    axes.imshow(pixels, extent=(0, width, height, 0), interpolation="nearest")
    axes.set_title(title, fontsize=PANEL_TITLE_SIZE, color=colour)
    axes.set_axis_off()


def _add_box(axes: Axes, box: Box, colour: str, gid: str, hatch: str | None = None) -> None:
    xy, width, height = rectangle_of(box)
    style = "--" if hatch else "-"
    axes.add_patch(
        Rectangle(
            xy,
            width,
            height,
            fill=False,
            edgecolor=colour,
            linewidth=BOX_LINE_WIDTH,
            linestyle=style,
            hatch=hatch,
            gid=gid,
            clip_on=False,
        )
    )


def _view_title(number: int, flipped: bool) -> str:
    return f"view {number}" + (" (mirrored)" if flipped else "")


def draw_pair_row(container: FigureBase, panel: PairPanel) -> None:
    """Draw one row into ``container``: the source with the boxes, view 1, view 2, and a title.

    The source axes gets gid ``"source"``; its rectangles get gids ``"view1"``, ``"view2"``
    and, for the cutout family, ``"hole"``.
    """
    source_axes, *view_axes = container.subplots(1, 3)
    height, width = panel.image_size
    _show(source_axes, panel.source, f"source {width}×{height}")
    source_axes.set_gid(SOURCE_GID)
    for box, colour, gid in zip(panel.boxes, VIEW_COLOURS, VIEW_GIDS, strict=True):
        _add_box(source_axes, box, colour, gid)
    if panel.hole is not None:
        _add_box(source_axes, panel.hole, HOLE_COLOUR, HOLE_GID, hatch=HOLE_HATCH)
    views = (panel.view1, panel.view2)
    for number, (axes, pixels, flipped, colour) in enumerate(
        zip(view_axes, views, panel.flipped, VIEW_COLOURS, strict=True), start=1
    ):
        _show(axes, pixels, _view_title(number, flipped), colour)
    container.suptitle(panel.title, fontsize=ROW_TITLE_SIZE)


def _new_figure(height_inches: float) -> Figure:
    figure = Figure(figsize=(3 * PANEL_INCHES + 0.4, height_inches), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _draw_rows(container: FigureBase, panels: Sequence[PairPanel]) -> None:
    rows = container.subfigures(len(panels), 1, squeeze=False)[:, 0]
    for row, panel in zip(rows, panels, strict=True):
        draw_pair_row(row, panel)


def _rows_inches(count: int) -> float:
    return count * (PANEL_INCHES + ROW_TITLE_INCHES)


def build_view_pairs_figure(
    config: TrainConfig, count: int = 8, seed: int = 0, photometric: bool = False
) -> Figure:
    """The figure that :func:`draw_view_pairs` saves."""
    panels = pair_panels(*view_pairs(config, count, seed, photometric))
    figure = _new_figure(_rows_inches(len(panels)) + FIGURE_TITLE_INCHES)
    figure.suptitle(view_pairs_title(config, photometric), fontsize=FIGURE_TITLE_SIZE)
    _draw_rows(figure, panels)
    return figure


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, format="png")
    return path


def draw_view_pairs(
    config: TrainConfig,
    path: str | Path,
    count: int = 8,
    seed: int = 0,
    photometric: bool = False,
) -> Path:
    """Write a PNG with one row per image: the source with both boxes, view 1 and view 2.

    Boxes are drawn in the colour of their view's title (the cutout hole hatched on top); each
    row's title gives the pair's realised overlap, centre distance and phi. Returns ``path``.
    """
    return _save(build_view_pairs_figure(config, count, seed, photometric), path)


def gallery_config(family: str, params: dict[str, Any], size: int, dataset: str) -> TrainConfig:
    """A default config but for the dataset and the views."""
    return TrainConfig(
        data=DataConfig(dataset=dataset),
        views=ViewConfig(family=family, params=dict(params), size=size),
    )


def build_family_gallery_figure(
    family_params: Sequence[tuple[str, dict[str, Any]]],
    size: int = 32,
    dataset: str = "digits",
    count: int = 4,
    seed: int = 0,
) -> Figure:
    """The figure that :func:`draw_family_gallery` saves."""
    if not family_params:
        raise ValueError("family_params is empty: expected at least one (family, params) pair")
    configs = [gallery_config(family, params, size, dataset) for family, params in family_params]
    blocks = [pair_panels(*view_pairs(config, count, seed)) for config in configs]
    block_inches = _rows_inches(len(blocks[0])) + BLOCK_LABEL_INCHES
    figure = _new_figure(len(blocks) * block_inches + FIGURE_TITLE_INCHES)
    figure.suptitle(f"View families on {dataset} (seed {seed})", fontsize=FIGURE_TITLE_SIZE)
    containers = figure.subfigures(
        len(blocks), 1, squeeze=False, edgecolor=BLOCK_EDGE_COLOUR, linewidth=1
    )[:, 0]
    for container, config, panels in zip(containers, configs, blocks, strict=True):
        container.suptitle(
            sampler_label(config.views.build()), fontsize=BLOCK_LABEL_SIZE, fontweight="bold"
        )
        _draw_rows(container, panels)
    return figure


def draw_family_gallery(
    family_params: list[tuple[str, dict[str, Any]]],
    path: str | Path,
    size: int = 32,
    dataset: str = "digits",
    count: int = 4,
    seed: int = 0,
) -> Path:
    """Write a PNG with one labelled block of :func:`draw_view_pairs` rows per (family, params).

    Every block samples the same first ``count`` images of ``dataset`` from the same seed, so
    blocks differ only by the sampler; no photometric recipe is applied. ``family_params`` is,
    e.g., ``[("overlap", {"overlap": 0.2}), ("cutout", {"hole": 0.3, "fill": "blur"})]``.
    """
    return _save(build_family_gallery_figure(family_params, size, dataset, count, seed), path)
