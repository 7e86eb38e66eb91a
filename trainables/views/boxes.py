"""Box geometry as pure tensor functions.

Boxes are float64 tensors ``(..., 4)`` holding ``x0, y0, x1, y1`` in continuous source-image
pixels: the image covers ``[0, W] x [0, H]`` and pixel ``(i, j)`` covers
``[j, j + 1] x [i, i + 1]``. Every sampler draws a batch of ``n`` geometries at once from a
``torch.Generator``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

DTYPE = torch.float64


def box_width(boxes: Tensor) -> Tensor:
    return boxes[..., 2] - boxes[..., 0]


def box_height(boxes: Tensor) -> Tensor:
    return boxes[..., 3] - boxes[..., 1]


def box_area(boxes: Tensor) -> Tensor:
    return box_width(boxes).clamp_min(0) * box_height(boxes).clamp_min(0)


def box_centers(boxes: Tensor) -> Tensor:
    """``(..., 2)`` centres ``(cx, cy)``."""
    return torch.stack(
        ((boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2), dim=-1
    )


def intersection_area(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    low = torch.maximum(boxes_a[..., :2], boxes_b[..., :2])
    high = torch.minimum(boxes_a[..., 2:], boxes_b[..., 2:])
    return (high - low).clamp_min(0).prod(dim=-1)


def center_distance(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    return torch.linalg.vector_norm(box_centers(boxes_a) - box_centers(boxes_b), dim=-1)


def full_boxes(n: int, height: int, width: int) -> Tensor:
    """``(n, 4)`` boxes covering the whole image."""
    return torch.tensor([0.0, 0.0, width, height], dtype=DTYPE).expand(n, 4).clone()


def uniform(
    n: int, low: Tensor | float, high: Tensor | float, generator: torch.Generator | None
) -> Tensor:
    """``n`` draws from U(low, high), elementwise when the bounds are tensors."""
    unit = torch.rand(n, generator=generator, dtype=DTYPE)
    return low + (high - low) * unit


def coin(n: int, generator: torch.Generator | None) -> Tensor:
    """``n`` fair booleans."""
    return torch.rand(n, generator=generator, dtype=DTYPE) < 0.5


def log_uniform_clamped(
    n: int,
    low: float,
    high: float,
    feasible_low: Tensor,
    feasible_high: Tensor,
    generator: torch.Generator | None,
) -> Tensor:
    """Log-uniform draws from ``[low, high]`` intersected with ``[feasible_low, feasible_high]``.

    When the two intervals do not meet, the draw is the feasible bound closest to ``[low, high]``.
    """
    log_fl, log_fh = feasible_low.log(), feasible_high.log()
    log_lo = torch.clamp(torch.full_like(log_fl, math.log(low)), log_fl, log_fh)
    log_hi = torch.clamp(torch.full_like(log_fl, math.log(high)), log_fl, log_fh)
    return uniform(n, log_lo, log_hi, generator).exp()


def sample_sides(
    area: Tensor,
    height: float,
    width: float,
    ratio: tuple[float, float],
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """Box sides ``(w, h)`` with ``w * h == area``, ``w <= width`` and ``h <= height``.

    The aspect ratio ``w / h`` is log-uniform in ``ratio`` where a box of that area fits the
    image, and the closest fitting aspect ratio otherwise (a wide image with a large area, say).
    Requires ``0 < area <= height * width``.
    """
    n = area.shape[0]
    aspect = log_uniform_clamped(
        n, ratio[0], ratio[1], area / height**2, width**2 / area, generator
    )
    box_w = torch.sqrt(area * aspect).clamp(max=width)
    box_h = (area / box_w).clamp(max=height)
    return box_w, box_h


def shortest_side_on_square(area_fraction: float, ratio: tuple[float, float]) -> float:
    """The shortest side, over the image side, that :func:`sample_sides` can give a box covering
    ``area_fraction`` of a square image. Its aspect ``a = w / h`` lies in ``ratio`` clamped to what
    fits, ``[area_fraction, 1 / area_fraction]``; its shorter side is
    ``sqrt(area * min(a, 1 / a))``, which is smallest at an end of that range:
    ``min(low, 1 / high)``."""
    low, high = (min(max(r, area_fraction), 1 / area_fraction) for r in ratio)
    return math.sqrt(area_fraction * min(low, 1 / high))


def place_uniform(
    box_w: Tensor, box_h: Tensor, height: float, width: float, generator: torch.Generator | None
) -> Tensor:
    """Boxes of the given sides at uniformly random positions inside the image."""
    n = box_w.shape[0]
    x0 = uniform(n, 0.0, (width - box_w).clamp_min(0), generator)
    y0 = uniform(n, 0.0, (height - box_h).clamp_min(0), generator)
    return torch.stack((x0, y0, x0 + box_w, y0 + box_h), dim=-1)


def sample_boxes_of_area(
    area_fraction: Tensor | float,
    n: int,
    height: int,
    width: int,
    ratio: tuple[float, float],
    generator: torch.Generator | None,
) -> Tensor:
    """``(n, 4)`` boxes of area ``area_fraction * H * W``, aspect ratio in ``ratio`` where it
    fits (see :func:`sample_sides`), at uniform positions."""
    area = torch.as_tensor(area_fraction, dtype=DTYPE).expand(n) * (height * width)
    box_w, box_h = sample_sides(area, height, width, ratio, generator)
    return place_uniform(box_w, box_h, height, width, generator)


RESIZED_CROP_TRIES = 10


def centre_crop_sides(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """``(w, h)`` of RandomResizedCrop's fallback: the whole image, narrowed to ``ratio``."""
    in_ratio = width / height
    if in_ratio < ratio[0]:
        return width, int(round(width / ratio[0]))
    if in_ratio > ratio[1]:
        return int(round(height * ratio[1])), height
    return width, height


def random_resized_crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None,
) -> Tensor:
    """``(n, 4)`` boxes drawn from exactly torchvision's ``RandomResizedCrop.get_params``.

    Up to 10 tries of an area uniform in ``scale`` of the image and an aspect ratio log-uniform
    in ``ratio``; the sides are rounded to whole pixels (half to even, as Python's ``round``)
    and a try is kept when it fits the image. The first kept try is placed at a uniformly random
    whole-pixel offset; rows with no kept try get the fallback, a centred crop of
    :func:`centre_crop_sides`. All ``n`` rows draw their tries at once.
    """
    shape = (n, RESIZED_CROP_TRIES)
    target_area = (height * width) * uniform(
        n * RESIZED_CROP_TRIES, scale[0], scale[1], generator
    ).view(shape)
    log_ratio = uniform(
        n * RESIZED_CROP_TRIES, math.log(ratio[0]), math.log(ratio[1]), generator
    ).view(shape)
    aspect = log_ratio.exp()
    tries_w = torch.sqrt(target_area * aspect).round()
    tries_h = torch.sqrt(target_area / aspect).round()
    fits = (tries_w > 0) & (tries_w <= width) & (tries_h > 0) & (tries_h <= height)
    first = fits.to(torch.int8).argmax(dim=1, keepdim=True)
    kept = fits.any(dim=1)
    fallback_w, fallback_h = centre_crop_sides(height, width, ratio)
    box_w = torch.where(kept, tries_w.gather(1, first)[:, 0], float(fallback_w))
    box_h = torch.where(kept, tries_h.gather(1, first)[:, 0], float(fallback_h))
    offset_unit = torch.rand(n, 2, generator=generator, dtype=DTYPE)
    x0 = torch.where(
        kept, (offset_unit[:, 0] * (width - box_w + 1)).floor(), float((width - fallback_w) // 2)
    )
    y0 = torch.where(
        kept, (offset_unit[:, 1] * (height - box_h + 1)).floor(), float((height - fallback_h) // 2)
    )
    return torch.stack((x0, y0, x0 + box_w, y0 + box_h), dim=-1)
