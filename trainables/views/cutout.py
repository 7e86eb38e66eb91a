"""Cutout and cutout-blur (paper 3.2): the whole image with a hole filled, and the hole."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from trainables.validation import ConfigError, check_choice, check_range
from trainables.views import boxes as B
from trainables.views.render import (
    MIN_KERNEL,
    blur_fits,
    fill_holes,
    hole_mask,
    hole_shorter_side,
    relative_blur,
    smallest_fitting_blur,
)
from trainables.views.sampler import RATIO, ViewSampler, check_ratio, register

FILLS = ("zero", "blur", "none")


@register("cutout")
@dataclass(frozen=True)
class Cutout(ViewSampler):
    """View 1 is the whole image with a hole filled; view 2 is the hole's region.

    ``hole`` is the hole's area over the image area (the paper's cutout size). ``fill`` is
    ``zero`` (black: cutout), ``blur`` (a Gaussian blur: the paper's cutout-blur) or ``none``
    (untouched: this is then the patch augmentation). The hole's aspect ratio is log-uniform in
    ``ratio`` where it fits and its position uniform.

    ``blur`` in (0, 1] is the blur's strength relative to the hole: the kernel's +-3 sigma window
    spans ``blur`` of the hole's shorter side in view 1 (output pixels), per sample, so sigma is
    ``blur * side / 6`` and the kernel the largest odd side up to ``blur * side``
    (:func:`~trainables.views.render.relative_blur`). Being a fraction of the hole, it removes the
    same share of the hole's structure at every resolution, and the kernel fits the hole by
    construction; a sigma fixed in pixels was a different share of each hole and view size.
    ``validate`` asks that ``blur`` of the shortest side a hole can have on a square image spans
    a 3 px kernel. On other images view 1 is stretched to a square and a hole can be narrower
    there: the kernel follows that real side, and is never under 3 px.
    """

    hole: float = 0.25
    fill: str = "zero"
    blur: float = 1.0
    ratio: tuple[float, float] = RATIO

    def validate(self) -> None:
        check_range(self.field("hole"), self.hole, 0, 1, low_open=True, high_open=True)
        check_choice(self.field("fill"), self.fill, FILLS)
        check_ratio(self.field("ratio"), self.ratio)
        if self.fill == "blur":
            check_range(self.field("blur"), self.blur, 0, 1, low_open=True)
            side = B.shortest_side_on_square(self.hole, self.ratio) * self.size
            if not blur_fits(self.blur, side):
                smallest = smallest_fitting_blur(side)
                remedy = (
                    f"blur >= {math.ceil(smallest * 1e4) / 1e4:g}"
                    if smallest <= 1
                    else "a larger hole or view size"
                )
                raise ConfigError(
                    self.field("blur"),
                    self.blur,
                    "a blur whose kernel (blur x the hole's shorter side) spans at least "
                    f"{MIN_KERNEL} px; the hole's shorter side can be {side:.2f} px "
                    f"(hole={self.hole} at size={self.size}): {remedy}",
                )

    def sample_boxes(self, n, height, width, generator):
        whole = B.full_boxes(n, height, width)
        hole = B.sample_boxes_of_area(self.hole, n, height, width, self.ratio, generator)
        return torch.stack((whole, hole), dim=1), hole.clone()

    def render(self, images, geometry):
        view1, view2 = super().render(images, geometry)
        return self.fill_hole(view1, geometry.hole, geometry.boxes[:, 0]), view2

    def render_one(self, image, geometry):
        view1, view2 = super().render_one(image, geometry)
        return self.fill_hole(view1[None], geometry.hole[None], geometry.boxes[None, 0])[0], view2

    def fill_hole(self, views: Tensor, holes: Tensor, frames: Tensor) -> Tensor:
        """Fill each ``(B, 4)`` hole of views ``(B, C, size, size)`` cut from ``frames``."""
        kernel_sizes, sigmas = relative_blur(self.blur, hole_shorter_side(holes, frames, self.size))
        return fill_holes(
            views, hole_mask(holes, frames, self.size), self.fill, kernel_sizes, sigmas
        )
