"""The view sampler interface, the registry of view families, and the checks they share.

A family is a frozen :class:`ViewSampler` registered by name (:func:`register`); its geometry
(``sample``) is kept apart from rendering (``render``). The families themselves live in
:mod:`trainables.views.crops` and :mod:`trainables.views.cutout`.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from trainables.validation import ConfigError, check_choice, check_range
from trainables.views import boxes as B
from trainables.views.geometry import ViewGeometry
from trainables.views.render import crop_resize, crop_resize_one

RATIO = (3 / 4, 4 / 3)

VIEW_FAMILIES: dict[str, type[ViewSampler]] = {}


def register(name: str) -> Callable[[type[ViewSampler]], type[ViewSampler]]:
    def add(cls: type[ViewSampler]) -> type[ViewSampler]:
        cls.family = name
        VIEW_FAMILIES[name] = cls
        return cls

    return add


def check_ratio(field: str, ratio: tuple[float, float]) -> None:
    if len(ratio) != 2 or not (0 < ratio[0] <= ratio[1]):
        raise ConfigError(field, ratio, "a pair (low, high) with 0 < low <= high")


def check_scale(field: str, scale: tuple[float, float]) -> None:
    if len(scale) != 2 or not (0 < scale[0] <= scale[1] <= 1):
        raise ConfigError(
            field, scale, "a pair (low, high) of image-area fractions with 0 < low <= high <= 1"
        )


@dataclass(frozen=True)
class ViewSampler(ABC):
    """Samples two spatial views of an image. Spatial only: photometric changes come later.

    ``geometry``/``sample`` draw boxes; ``render`` turns boxes into pixels for a batch of
    same-sized images and ``render_one`` for one image of any size (the per-sample path; both
    give the same views for the same geometry). Calling the sampler does both for one image:
    ``view1, view2, geometry = sampler(image, generator)``.
    """

    size: int = 32
    family: ClassVar[str]

    def __post_init__(self) -> None:
        check_range("size", self.size, 1, integer=True)
        self.validate()

    def validate(self) -> None:
        """Check the family's own parameters; raise ConfigError naming the bad one."""

    def check_image(self, height: int, width: int) -> None:
        """Refuse parameters the family cannot honour on ``height x width`` images."""

    def field(self, name: str) -> str:
        return f"{self.family}.{name}"

    @abstractmethod
    def sample_boxes(
        self, n: int, height: int, width: int, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor | None]:
        """``(n, 2, 4)`` boxes of view 1 and view 2, and ``(n, 4)`` holes or None."""

    def sample(
        self, n: int, height: int, width: int, generator: torch.Generator | None = None
    ) -> ViewGeometry:
        """A batch of ``n`` geometries for images of ``height x width`` pixels."""
        check_range("height", height, 1, integer=True)
        check_range("width", width, 1, integer=True)
        boxes, holes = self.sample_boxes(n, height, width, generator)
        image_size = torch.tensor([height, width]).expand(n, 2).clone()
        return ViewGeometry(boxes=boxes, image_size=image_size, hole=holes)

    def geometry(
        self, height: int, width: int, generator: torch.Generator | None = None
    ) -> ViewGeometry:
        return self.sample(1, height, width, generator)[0]

    def render(self, images: Tensor, geometry: ViewGeometry) -> tuple[Tensor, Tensor]:
        """Render a batch: ``images`` is ``(B, C, H, W)``, geometry a batch of ``B``."""
        view1 = crop_resize(images, geometry.boxes[:, 0], self.size)
        view2 = crop_resize(images, geometry.boxes[:, 1], self.size)
        return view1, view2

    def render_one(self, image: Tensor, geometry: ViewGeometry) -> tuple[Tensor, Tensor]:
        """Render one image ``(C, H, W)`` with a single geometry (``boxes`` is ``(2, 4)``)."""
        view1 = crop_resize_one(image, geometry.boxes[0], self.size)
        view2 = crop_resize_one(image, geometry.boxes[1], self.size)
        return view1, view2

    def batch(
        self, images: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, ViewGeometry]:
        """Sample and render views for a batch of same-sized images ``(B, C, H, W)``."""
        geometry = self.sample(images.shape[0], images.shape[-2], images.shape[-1], generator)
        return (*self.render(images, geometry), geometry)

    def __call__(
        self, image: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, ViewGeometry]:
        """Sample and render the views of one image ``(C, H, W)`` with the per-sample path."""
        geometry = self.geometry(image.shape[-2], image.shape[-1], generator)
        return (*self.render_one(image, geometry), geometry)


def pair_text(pair: tuple[float, float]) -> str:
    return "[" + ", ".join(f"{value:.4g}" for value in pair) + "]"


def image_text(height: int, width: int) -> str:
    return "a square image" if height == width else f"a {height}x{width} image"


def clip_to_image(boxes: Tensor, height: int, width: int) -> Tensor:
    """Remove floating-point spill past the image border (never more than a few ulps)."""
    limits = torch.tensor([width, height, width, height], dtype=B.DTYPE)
    return torch.minimum(boxes.clamp_min(0), limits)


PAIR_PARAMS = ("ratio", "scale", "crop_ratio", "crop_area")
"""Parameters that are (low, high) pairs; configs from YAML or MLflow hold them as lists."""


def make_views(family: str, size: int = 32, **params: Any) -> ViewSampler:
    """Build a view sampler by family name, e.g. ``make_views("overlap", overlap=0.3, size=32)``."""
    check_choice("views.family", family, VIEW_FAMILIES)
    cls = VIEW_FAMILIES[family]
    accepted = {f.name for f in dataclasses.fields(cls)}
    for name in params:
        if name not in accepted:
            raise ConfigError(
                f"{family}.{name}",
                params[name],
                "one of the parameters " + ", ".join(sorted(accepted)),
            )
    for name in PAIR_PARAMS:
        if params.get(name) is not None:
            params[name] = tuple(params[name])
    return cls(size=size, **params)
