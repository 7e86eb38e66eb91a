"""Box maths for pairs of crops: which overlaps and exclusive gaps are feasible, and sampling
crops that share a set area.

An overlapping pair is two crops of the image whose intersection has area ``overlap * H * W``.
Each crop's sides are drawn as RandomResizedCrop draws them (area uniform in ``area`` of the
image, aspect ratio ``w / h`` log-uniform in ``ratio``), so the crops' zoom and stretch are the
caller's to fix, and the overlap only decides how the two are placed against each other.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from trainables.views.boxes import DTYPE, coin, uniform

PAIR_TRIES = 64
"""Side draws per round; a row keeps its first draw that admits the overlap."""
PAIR_ROUNDS = 64
"""Rounds of ``PAIR_TRIES`` draws for the rows still without a pair (4096 draws in all)."""
ASPECT_STEPS = 257
"""Aspect ratios per axis of the grid on which :func:`feasible_overlap_range` searches."""


def _fitted_sides(
    area: Tensor, aspect: Tensor, height: float, width: float
) -> tuple[Tensor, Tensor]:
    """Sides of the largest box of aspect ``aspect`` and at most ``area`` that fits the image."""
    box_w = torch.minimum(
        torch.sqrt(area * aspect), torch.minimum(torch.full_like(aspect, width), height * aspect)
    )
    return box_w, box_w / aspect


def feasible_overlap_range(
    area: tuple[float, float], ratio: tuple[float, float], height: float, width: float
) -> tuple[float, float]:
    """``(low, high)``: the overlaps (fractions of the image) some pair of crops of ``area`` and
    ``ratio`` can share on a ``height x width`` image; ``(nan, nan)`` when no crop fits at all.

    For crop sides ``(w1, h1), (w2, h2)`` the shared area ranges continuously from what the
    image forces, ``max(w1 + w2 - W, 0) * max(h1 + h2 - H, 0)``, to ``min(w1, w2) * min(h1,
    h2)``; the union over all sides is the interval from the least forced to the largest
    shared area. The least forced is at the smallest crops (area ``area[0]``), the largest
    shared at two equal crops as large as fits, both searched over a grid of aspect ratios.
    """
    image_area = height * width
    aspects = torch.exp(
        torch.linspace(math.log(ratio[0]), math.log(ratio[1]), ASPECT_STEPS, dtype=DTYPE)
    )
    large_w, large_h = _fitted_sides(
        torch.full_like(aspects, area[1] * image_area), aspects, height, width
    )
    large = large_w * large_h
    small_w = torch.sqrt(area[0] * image_area * aspects)
    small_h = small_w / aspects
    fits = (small_w <= width * (1 + 1e-12)) & (small_h <= height * (1 + 1e-12))
    if not bool(fits.any()) or float(large.max()) < area[0] * image_area * (1 - 1e-12):
        return math.nan, math.nan
    small_w, small_h = small_w[fits], small_h[fits]
    forced = (small_w[:, None] + small_w[None, :] - width).clamp_min(0) * (
        small_h[:, None] + small_h[None, :] - height
    ).clamp_min(0)
    return float(forced.min()) / image_area, min(float(large.max()) / image_area, area[1])


def _necessary_bounds(
    overlap: float, area: tuple[float, float], ratio: tuple[float, float], height: int, width: int
) -> tuple[tuple[float, float], tuple[float, float]]:
    """``area`` and ``ratio`` narrowed to what a crop of an admitted pair needs: an area of at
    least the overlap and no larger than fits, and an aspect with which the smallest such area
    fits the image."""
    image_area = height * width
    aspects = torch.exp(
        torch.linspace(math.log(ratio[0]), math.log(ratio[1]), ASPECT_STEPS, dtype=DTYPE)
    )
    fitted_w, fitted_h = _fitted_sides(
        torch.full_like(aspects, area[1] * image_area), aspects, height, width
    )
    largest = float((fitted_w * fitted_h).max()) / image_area
    smallest = max(area[0], overlap)
    return (
        (smallest, min(area[1], largest * (1 + 1e-9))),
        (
            max(ratio[0], smallest * image_area / height**2),
            min(ratio[1], width**2 / (smallest * image_area)),
        ),
    )


def _draw_sides(
    shape: tuple[int, int],
    area: tuple[float, float],
    ratio: tuple[float, float],
    image_area: float,
    generator,
) -> tuple[Tensor, Tensor]:
    count = shape[0] * shape[1]
    crop_area = image_area * uniform(count, area[0], area[1], generator).view(shape)
    aspect = uniform(count, math.log(ratio[0]), math.log(ratio[1]), generator).view(shape).exp()
    box_w = torch.sqrt(crop_area * aspect)
    return box_w, crop_area / box_w


def _shared_width_bounds(
    sides: tuple[Tensor, Tensor, Tensor, Tensor], shared_area: float, height: int, width: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Per draw, the interval of the shared region's width ``ix`` (its height is then
    ``shared_area / ix``) that keeps both crops, and their union, inside the image, and whether
    the draw admits one."""
    w1, h1, w2, h2 = sides
    height_excess = h1 + h2 - height
    low = torch.maximum(shared_area / torch.minimum(h1, h2), (w1 + w2 - width).clamp_min(0))
    high = torch.minimum(torch.minimum(w1, w2), shared_area / height_excess.clamp_min(1e-300))
    inside = (w1 <= width) & (h1 <= height) & (w2 <= width) & (h2 <= height)
    return low, high, inside & (low <= high)


def _place(
    sides: tuple[Tensor, Tensor, Tensor, Tensor],
    shared_w: Tensor,
    shared_area: float,
    height: int,
    width: int,
    generator,
) -> Tensor:
    """``(n, 2, 4)`` crops of the given sides sharing a ``shared_w x shared_area / shared_w``
    region: along each axis crop 2 juts out past crop 1 on a fair coin's side, and the pair's
    union sits at a uniform position."""
    w1, h1, w2, h2 = sides
    n = w1.shape[0]
    shared_h = shared_area / shared_w
    dx = torch.where(coin(n, generator), w1 - shared_w, shared_w - w2)
    dy = torch.where(coin(n, generator), h1 - shared_h, shared_h - h2)
    x0 = uniform(n, 0.0, (width - (w1 + w2 - shared_w)).clamp_min(0), generator) - dx.clamp_max(0)
    y0 = uniform(n, 0.0, (height - (h1 + h2 - shared_h)).clamp_min(0), generator) - dy.clamp_max(0)
    first = torch.stack((x0, y0, x0 + w1, y0 + h1), dim=-1)
    second = torch.stack((x0 + dx, y0 + dy, x0 + dx + w2, y0 + dy + h2), dim=-1)
    return torch.stack((first, second), dim=1)


def sample_overlapping_pairs(
    n: int,
    height: int,
    width: int,
    overlap: float,
    area: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """``(n, 2, 4)`` crop pairs sharing exactly ``overlap`` of the image, and ``(n,)`` whether
    each row found one.

    The area and aspect draws are truncated to what every crop of an admitted pair needs
    (:func:`_necessary_bounds`), which conditions them exactly as rejecting would. Each round
    draws ``PAIR_TRIES`` pairs of crop sides per row still without a pair; a row
    keeps its first draw for which some placement shares the area (both crops and their union
    inside the image). The shared region's width is then uniform over what that draw admits,
    and the pair is placed by :func:`_place`. Rows that find none in ``PAIR_ROUNDS`` rounds are
    returned as zeros with ``found`` False, for the caller's fallback.
    """
    shared_area = overlap * height * width
    boxes = torch.zeros(n, 2, 4, dtype=DTYPE)
    found = torch.zeros(n, dtype=torch.bool)
    area, ratio = _necessary_bounds(overlap, area, ratio, height, width)
    if not (area[0] <= area[1] and ratio[0] <= ratio[1]):
        return boxes, found
    for _ in range(PAIR_ROUNDS):
        missing = (~found).nonzero().flatten()
        if len(missing) == 0:
            break
        shape = (len(missing), PAIR_TRIES)
        sides = (
            *_draw_sides(shape, area, ratio, height * width, generator),
            *_draw_sides(shape, area, ratio, height * width, generator),
        )
        low, high, admits = _shared_width_bounds(sides, shared_area, height, width)
        first = admits.to(torch.int8).argmax(dim=1, keepdim=True)
        kept = admits.any(dim=1)
        pick = [values.gather(1, first)[:, 0] for values in (*sides, low, high)]
        shared_w = uniform(len(missing), pick[4], pick[5], generator)
        placed = _place(tuple(pick[:4]), shared_w, shared_area, height, width, generator)
        rows = missing[kept]
        boxes[rows] = placed[kept]
        found[rows] = True
    return boxes, found


def largest_exclusive_gap(
    crop: float, ratio: tuple[float, float], along: float = 1.0, across: float = 1.0
) -> float:
    """The largest exclusive region (a fraction of the image area) that two crops of ``crop`` of
    the image, side by side along an axis of length ``along``, can hold between them while the
    lower half of ``ratio`` (in log scale) stays open to their aspect ratio (along-side over
    across-side).

    With crop sides ``a`` (along) and ``b`` (across), the region between the facing edges spans
    at most ``b`` across and ``along - 2 a`` along, so it holds at most ``b (along - 2 a)``; this
    falls as the crops widen along the axis, and the bound is taken at the aspect
    ``sqrt(ratio[0] * ratio[1])``. Below it, every aspect from ``ratio[0]`` to that one leaves the
    second crop room to slide across, so the pair's shape and centre distance stay random.
    0 when no such crop fits across.
    """
    image_area = along * across
    aspect = math.sqrt(ratio[0] * ratio[1])
    side_along = math.sqrt(crop * image_area * aspect)
    side_across = math.sqrt(crop * image_area / aspect)
    if side_across > across:
        return 0.0
    return max(0.0, side_across * (along - 2 * side_along)) / image_area
