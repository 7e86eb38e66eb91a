"""The geometry of a pair of views: where each view was cut from its source image."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from trainables.views.boxes import box_area, center_distance, intersection_area


@dataclass(frozen=True)
class ViewGeometry:
    """Boxes of the two views, for one pair (``boxes`` is ``(2, 4)``) or a batch (``(B, 2, 4)``).

    Attributes:
        boxes: ``x0, y0, x1, y1`` of view 1 and view 2 in source-image pixels (float64).
        image_size: ``(height, width)`` of the source image, ``(2,)`` or ``(B, 2)``.
        hole: the filled region of view 1 for the cutout family (``(4,)`` or ``(B, 4)``), else None.
    """

    boxes: Tensor
    image_size: Tensor
    hole: Tensor | None = None

    @property
    def distance(self) -> Tensor:
        """L2 distance between the two box centres, in pixels."""
        return center_distance(self.boxes[..., 0, :], self.boxes[..., 1, :])

    @property
    def diagonal(self) -> Tensor:
        return torch.linalg.vector_norm(self.image_size.to(self.boxes.dtype), dim=-1)

    @property
    def phi(self) -> Tensor:
        """Centre distance over the image diagonal: a resolution-free distance in [0, 1)."""
        return self.distance / self.diagonal

    @property
    def image_area(self) -> Tensor:
        return self.image_size.to(self.boxes.dtype).prod(dim=-1)

    @property
    def overlap(self) -> Tensor:
        """Realised ``area(box1 & box2) / (H * W)``."""
        return intersection_area(self.boxes[..., 0, :], self.boxes[..., 1, :]) / self.image_area

    @property
    def view_areas(self) -> Tensor:
        """``(..., 2)`` area of each view's box over the image area."""
        return box_area(self.boxes) / self.image_area.unsqueeze(-1)

    def __len__(self) -> int:
        if self.boxes.dim() != 3:
            raise TypeError("a single ViewGeometry has no length; only batches do")
        return self.boxes.shape[0]

    def __getitem__(self, index: int) -> ViewGeometry:
        return ViewGeometry(
            boxes=self.boxes[index],
            image_size=self.image_size[index],
            hole=None if self.hole is None else self.hole[index],
        )

    @staticmethod
    def stack(items: Sequence[ViewGeometry]) -> ViewGeometry:
        """Collate single geometries (possibly from images of different sizes) into a batch."""
        holes = [g.hole for g in items]
        if any(h is None for h in holes) and not all(h is None for h in holes):
            raise ValueError("cannot stack geometries with and without a cutout hole")
        return ViewGeometry(
            boxes=torch.stack([g.boxes for g in items]),
            image_size=torch.stack([g.image_size for g in items]),
            hole=None if holes[0] is None else torch.stack(holes),
        )

    @staticmethod
    def cat(batches: Sequence[ViewGeometry]) -> ViewGeometry:
        return ViewGeometry(
            boxes=torch.cat([g.boxes for g in batches]),
            image_size=torch.cat([g.image_size for g in batches]),
            hole=None if batches[0].hole is None else torch.cat([g.hole for g in batches]),
        )
