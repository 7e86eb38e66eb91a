"""The cropping families: the SimSiam baseline, overlap, patch and mutually exclusive crops."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from trainables.validation import ConfigError, check_choice, check_range
from trainables.views import boxes as B
from trainables.views.pairs import (
    feasible_overlap_range,
    largest_exclusive_gap,
    sample_overlapping_pairs,
)
from trainables.views.sampler import (
    RATIO,
    ViewSampler,
    check_ratio,
    check_scale,
    clip_to_image,
    image_text,
    pair_text,
    register,
)

CROP_DISTRIBUTIONS = ("area_first", "torchvision")


@register("random_crop")
@dataclass(frozen=True)
class RandomCrop(ViewSampler):
    """The SimSiam baseline: two independent RandomResizedCrop boxes.

    ``distribution="torchvision"`` (the default) draws from exactly
    ``RandomResizedCrop.get_params(scale, ratio)``, its 10 tries, whole-pixel sides and centred
    fallback included (:func:`~trainables.views.boxes.random_resized_crop_boxes`).
    ``"area_first"`` (the bundled recipes', on which they were tuned) draws the area uniformly in
    ``scale`` and narrows the aspect ratio to what fits, which keeps more large crops than
    torchvision and lets the aspect leave ``ratio`` on narrow images.
    """

    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = RATIO
    distribution: str = "torchvision"

    def validate(self) -> None:
        check_scale(self.field("scale"), self.scale)
        check_ratio(self.field("ratio"), self.ratio)
        check_choice(self.field("distribution"), self.distribution, CROP_DISTRIBUTIONS)

    def sample_boxes(self, n, height, width, generator):
        views = [self._boxes(n, height, width, generator) for _ in range(2)]
        return torch.stack(views, dim=1), None

    def _boxes(self, n, height, width, generator):
        if self.distribution == "torchvision":
            return B.random_resized_crop_boxes(n, height, width, self.scale, self.ratio, generator)
        area_fraction = B.uniform(n, self.scale[0], self.scale[1], generator)
        return B.sample_boxes_of_area(area_fraction, n, height, width, self.ratio, generator)


@register("overlap")
@dataclass(frozen=True)
class Overlap(ViewSampler):
    """Two random-size crops whose intersection covers exactly ``overlap`` of the image.

    Free crops (``crop_ratio`` and ``crop_area`` both None, the default): the shared region S
    has area ``overlap * H * W``, an aspect ratio log-uniform in ``ratio`` (narrowed to what
    fits the image) and a uniform position. Each of the four sides of S is given to one of the
    two crops by a fair coin; that crop extends past S on that side by a uniform fraction of
    the room left to the image border, while the other crop's edge stays on S. Each crop
    contains S, and the crops' areas (``overlap`` to 1) and aspect ratios are free, so they move
    with the overlap: the median crop is 0.21 of the image at overlap 0.1 and 0.92 at 0.9.

    Decoupled crops (``crop_ratio`` or ``crop_area`` set): each crop's sides are drawn as
    RandomResizedCrop's, area uniform in ``crop_area`` (default ``(overlap, 1)``) and aspect
    log-uniform in ``crop_ratio`` (default ``ratio``), and kept when the two can be placed to
    share exactly ``overlap`` (:func:`~trainables.views.pairs.sample_overlapping_pairs`): the
    overlap then varies alone. The overlaps a setting admits are
    :func:`~trainables.views.pairs.feasible_overlap_range`, checked here on a square image and
    by the training config on its dataset's images; a pair that finds no draw in 4096 (next to the
    range's ends) falls back to free crops.
    """

    overlap: float = 0.5
    ratio: tuple[float, float] = RATIO
    crop_ratio: tuple[float, float] | None = None
    crop_area: tuple[float, float] | None = None

    def validate(self) -> None:
        check_range(self.field("overlap"), self.overlap, 0, 1, low_open=True, high_open=True)
        check_ratio(self.field("ratio"), self.ratio)
        if self.crop_ratio is not None:
            check_ratio(self.field("crop_ratio"), self.crop_ratio)
        if self.crop_area is not None:
            check_scale(self.field("crop_area"), self.crop_area)
        self.check_image(1, 1)

    @property
    def decoupled(self) -> bool:
        return self.crop_ratio is not None or self.crop_area is not None

    @property
    def crop_sides(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """``(area, ratio)`` the decoupled crops' sides are drawn from."""
        return self.crop_area or (self.overlap, 1.0), self.crop_ratio or self.ratio

    def check_image(self, height: int, width: int) -> None:
        """Refuse decoupled crops that cannot share ``overlap`` of a ``height x width`` image."""
        if not self.decoupled:
            return
        area, ratio = self.crop_sides
        low, high = feasible_overlap_range(area, ratio, height, width)
        if math.isnan(low):
            largest = feasible_overlap_range((area[0] * 1e-6, area[1]), ratio, height, width)[1]
            field, value = (
                ("crop_area", self.crop_area)
                if self.crop_area is not None
                else ("overlap", self.overlap)
            )
            raise ConfigError(
                self.field(field),
                value,
                f"a {field.replace('_', ' ')} of at most {largest:.4f}, "
                f"the largest crop of aspect ratio in {pair_text(ratio)} "
                f"that fits {image_text(height, width)}",
            )
        if not low < self.overlap < high:
            raise ConfigError(
                self.field("overlap"),
                self.overlap,
                f"the open range ({low:.4f}, {high:.4f}) that crops of area {pair_text(area)} "
                f"and aspect ratio {pair_text(ratio)} can share on {image_text(height, width)}",
            )

    def sample_boxes(self, n, height, width, generator):
        if not self.decoupled:
            return self._free_boxes(n, height, width, generator), None
        area, ratio = self.crop_sides
        boxes, found = sample_overlapping_pairs(
            n, height, width, self.overlap, area, ratio, generator
        )
        if not bool(found.all()):
            boxes[~found] = self._free_boxes(int((~found).sum()), height, width, generator)
        return clip_to_image(boxes, height, width), None

    def _free_boxes(self, n, height, width, generator):
        shared = B.sample_boxes_of_area(self.overlap, n, height, width, self.ratio, generator)
        room = torch.stack(
            (shared[:, 0], shared[:, 1], width - shared[:, 2], height - shared[:, 3]), dim=1
        )
        outward = torch.tensor([-1.0, -1.0, 1.0, 1.0], dtype=B.DTYPE)
        crops = []
        owner_is_first = torch.stack([B.coin(n, generator) for _ in range(4)], dim=1)
        for owns in (owner_is_first, ~owner_is_first):
            extension = torch.stack(
                [B.uniform(n, 0.0, room[:, side], generator) for side in range(4)], dim=1
            )
            crops.append(shared + outward * extension * owns)
        return clip_to_image(torch.stack(crops, dim=1), height, width)


@register("patch")
@dataclass(frozen=True)
class Patch(ViewSampler):
    """View 1 is the whole image; view 2 a patch covering ``patch`` of the image area.

    The patch's aspect ratio is log-uniform in ``ratio`` where it fits and its position uniform.
    """

    patch: float = 0.3
    ratio: tuple[float, float] = RATIO

    def validate(self) -> None:
        check_range(self.field("patch"), self.patch, 0, 1, low_open=True, high_open=True)
        check_ratio(self.field("ratio"), self.ratio)

    def sample_boxes(self, n, height, width, generator):
        whole = B.full_boxes(n, height, width)
        patch = B.sample_boxes_of_area(self.patch, n, height, width, self.ratio, generator)
        return torch.stack((whole, patch), dim=1), None


@register("exclusive")
@dataclass(frozen=True)
class Exclusive(ViewSampler):
    """Two disjoint crops of equal size, side by side, with an exclusive region between them.

    ``crop`` is each crop's area over the image area and ``gap`` the area of the exclusive region
    (the rectangle between the crops' facing edges, spanning their shared extent) over the
    image area: the paper's "area of the exclusive region".

    Sampling: the axis (left-right or top-bottom) is a fair coin. The crops' aspect ratio is
    log-uniform in ``ratio``, narrowed to what leaves room for the gap. Across the axis, the
    second crop is offset from the first by a uniform amount, as far as the gap still fits; the
    gap's length along the axis then follows from its area. The pair sits at a uniform position
    and which crop is view 1 is a fair coin.

    Feasible region: ``gap`` at most :func:`~trainables.views.pairs.largest_exclusive_gap`,
    which keeps at least the lower half of ``ratio`` open to the aspect and the offset free, so
    no gap pins the crops to one shape (with ``crop=0.1`` and the default ratio, gaps up to
    0.116 of the image). Checked on a square image here, and along both axes of the dataset's
    images by the training config; an image of another shape whose axis leaves no aspect in
    ``ratio`` gets the closest one that fits.
    """

    gap: float = 0.1
    crop: float = 0.1
    ratio: tuple[float, float] = RATIO

    def validate(self) -> None:
        check_range(self.field("crop"), self.crop, 0, 0.5, low_open=True, high_open=True)
        check_range(self.field("gap"), self.gap, 0, low_open=True)
        check_ratio(self.field("ratio"), self.ratio)
        self.check_image(1, 1)

    def check_image(self, height: int, width: int) -> None:
        """Refuse a gap that pins the crops' shape along either axis of ``height x width``
        images."""
        largest = min(
            largest_exclusive_gap(self.crop, self.ratio, along, across)
            for along, across in ((width, height), (height, width))
        )
        if self.gap > largest:
            raise ConfigError(
                self.field("gap"),
                self.gap,
                f"a number in (0, {largest:.4f}]: the largest gap between crops of {self.crop} of "
                f"{image_text(height, width)} that leaves their aspect ratio and offset random "
                f"(aspect ratio in {pair_text(self.ratio)}); a smaller crop holds a larger gap",
            )

    def sample_boxes(self, n, height, width, generator):
        horizontal = B.coin(n, generator)
        along = torch.where(horizontal, float(width), float(height)).to(B.DTYPE)
        across = torch.where(horizontal, float(height), float(width)).to(B.DTYPE)
        image_area = float(height * width)
        crop_area = self.crop * image_area
        gap_area = self.gap * image_area
        # aspect = along-side / across-side of a crop; the gap fits iff across-side >= a bound.
        aspect = B.log_uniform_clamped(
            n,
            self.ratio[0],
            self.ratio[1],
            crop_area / across**2,
            self.crop * along / ((self.gap + 2 * self.crop) ** 2 * across),
            generator,
        )
        side_across = torch.sqrt(crop_area / aspect).clamp(max=across)
        side_along = crop_area / side_across
        room = (along - 2 * side_along).clamp_min(1e-12)
        max_offset = torch.minimum(across - side_across, side_across - gap_area / room).clamp_min(0)
        offset = B.uniform(n, -max_offset, max_offset, generator)
        gap_length = gap_area / (side_across - offset.abs())
        start = B.uniform(n, 0.0, (along - 2 * side_along - gap_length).clamp_min(0), generator)
        first_across = B.uniform(
            n, (-offset).clamp_min(0), across - side_across - offset.clamp_min(0), generator
        )
        first = torch.stack(
            (start, first_across, start + side_along, first_across + side_across), dim=1
        )
        second_start = start + side_along + gap_length
        second = torch.stack(
            (
                second_start,
                first_across + offset,
                second_start + side_along,
                first_across + offset + side_across,
            ),
            dim=1,
        )
        swap = B.coin(n, generator)[:, None]
        view1, view2 = torch.where(swap, second, first), torch.where(swap, first, second)
        boxes = torch.stack((view1, view2), dim=1)
        transposed = boxes[..., [1, 0, 3, 2]]
        boxes = torch.where(horizontal[:, None, None], boxes, transposed)
        return clip_to_image(boxes, height, width), None
