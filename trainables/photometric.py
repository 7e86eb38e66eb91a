"""The SimSiam photometric recipe, applied to each view independently after the spatial stage.

Batched: every view of a batch draws its own parameters, and each operation runs once over the
views it applies to, as tensor ops on whatever device the views are on. The operations follow
torchvision's functional definitions (tests check them against ``torchvision.transforms.v2``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from trainables.validation import ConfigError, check_range

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


@dataclass(frozen=True)
class PhotometricConfig:
    """ColorJitter(brightness, contrast, saturation, hue) with ``jitter_p``, grayscale with
    ``grayscale_p``, horizontal flip with ``flip_p`` and Gaussian blur with ``blur_p``.

    SimSiam uses ``blur_p=0.5`` (sigma uniform in [0.1, 2.0], kernel about a tenth of the view)
    at ImageNet size and no blur at CIFAR size.
    """

    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    flip_p: float = 0.5
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)

    def __post_init__(self) -> None:
        for name in ("brightness", "contrast", "saturation"):
            check_range(f"photometric.{name}", getattr(self, name), 0, 1)
        check_range("photometric.hue", self.hue, 0, 0.5)
        for name in ("jitter_p", "grayscale_p", "flip_p", "blur_p"):
            check_range(f"photometric.{name}", getattr(self, name), 0, 1)
        if len(self.blur_sigma) != 2 or not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ConfigError(
                "photometric.blur_sigma", self.blur_sigma, "a pair (low, high) with 0 < low <= high"
            )

    @classmethod
    def none(cls) -> PhotometricConfig:
        """No photometric change at all: views stay exactly as the spatial stage rendered them."""
        return cls(jitter_p=0.0, grayscale_p=0.0, flip_p=0.0, blur_p=0.0)


def _factors(images: Tensor, factors: Tensor) -> Tensor:
    return factors.to(images).view(-1, 1, 1, 1)


def _blend(images: Tensor, other: Tensor, ratio: Tensor) -> Tensor:
    ratio = _factors(images, ratio)
    return (ratio * images + (1 - ratio) * other).clamp_(0, 1)


def grayscale(images: Tensor) -> Tensor:
    """``(B, 1, H, W)`` luma of ``(B, 3, H, W)`` RGB in [0, 1]."""
    weights = torch.tensor(GRAY_WEIGHTS, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def adjust_brightness(images: Tensor, factors: Tensor) -> Tensor:
    return _blend(images, torch.zeros_like(images), factors)


def adjust_contrast(images: Tensor, factors: Tensor) -> Tensor:
    return _blend(images, grayscale(images).mean(dim=(-3, -2, -1), keepdim=True), factors)


def adjust_saturation(images: Tensor, factors: Tensor) -> Tensor:
    return _blend(images, grayscale(images), factors)


def rgb_to_hsv(images: Tensor) -> Tensor:
    red, green, blue = images.unbind(dim=-3)
    maximum = images.amax(dim=-3)
    minimum = images.amin(dim=-3)
    chroma = maximum - minimum
    saturation = chroma / torch.where(maximum == 0, torch.ones_like(maximum), maximum)
    safe_chroma = torch.where(chroma == 0, torch.ones_like(chroma), chroma)
    red_c, green_c, blue_c = ((maximum - channel) / safe_chroma for channel in (red, green, blue))
    hue = torch.where(
        maximum == red,
        blue_c - green_c,
        torch.where(maximum == green, 2.0 + red_c - blue_c, 4.0 + green_c - red_c),
    )
    hue = torch.where(chroma == 0, torch.zeros_like(hue), hue)
    return torch.stack(((hue / 6.0).remainder(1.0), saturation, maximum), dim=-3)


def hsv_to_rgb(images: Tensor) -> Tensor:
    hue, saturation, value = images.unbind(dim=-3)
    sector = torch.floor(hue * 6.0)
    fraction = hue * 6.0 - sector
    sector = sector.to(torch.int64).remainder(6)
    p = (value * (1.0 - saturation)).clamp(0.0, 1.0)
    q = (value * (1.0 - saturation * fraction)).clamp(0.0, 1.0)
    t = (value * (1.0 - saturation * (1.0 - fraction))).clamp(0.0, 1.0)
    red = torch.stack((value, q, p, p, t, value), dim=-3)
    green = torch.stack((t, value, value, q, p, p), dim=-3)
    blue = torch.stack((p, p, t, value, value, q), dim=-3)
    index = sector.unsqueeze(-3)
    return torch.stack(
        [channel.gather(-3, index).squeeze(-3) for channel in (red, green, blue)], dim=-3
    )


def adjust_hue(images: Tensor, shifts: Tensor) -> Tensor:
    hsv = rgb_to_hsv(images)
    hue = (hsv[:, 0] + shifts.to(images).view(-1, 1, 1)).remainder(1.0)
    return hsv_to_rgb(torch.stack((hue, hsv[:, 1], hsv[:, 2]), dim=1))


def gaussian_blur(images: Tensor, sigmas: Tensor, kernel_size: int) -> Tensor:
    """Separable Gaussian blur with a per-image sigma and reflect padding, like torchvision's."""
    count, channels, height, width = images.shape
    offsets = (
        torch.arange(kernel_size, dtype=images.dtype, device=images.device) - (kernel_size - 1) / 2
    )
    kernels = torch.exp(-0.5 * (offsets[None, :] / sigmas.to(images)[:, None]) ** 2)
    kernels = (kernels / kernels.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)
    pad = kernel_size // 2
    flat = F.pad(
        images.reshape(1, count * channels, height, width), (pad, pad, pad, pad), mode="reflect"
    )
    flat = F.conv2d(flat, kernels.view(-1, 1, 1, kernel_size), groups=count * channels)
    flat = F.conv2d(flat, kernels.view(-1, 1, kernel_size, 1), groups=count * channels)
    return flat.view(count, channels, height, width)


JITTER_OPERATIONS: tuple[Callable[[Tensor, Tensor], Tensor], ...] = (
    adjust_brightness,
    adjust_contrast,
    adjust_saturation,
    adjust_hue,
)


def _uniform(count: int, low: float, high: float, generator: torch.Generator | None) -> Tensor:
    return low + (high - low) * torch.rand(count, generator=generator)


def _chance(count: int, p: float, generator: torch.Generator | None) -> Tensor:
    return torch.rand(count, generator=generator) < p


def _apply(
    images: Tensor, selected: Tensor, operation: Callable[..., Tensor], *args: Tensor
) -> Tensor:
    """``operation`` on the selected images only; the rest pass through untouched."""
    if selected.any():
        images = images.clone()
        images[selected] = operation(images[selected], *(arg[selected] for arg in args))
    return images


def color_jitter(
    images: Tensor, config: PhotometricConfig, generator: torch.Generator | None
) -> Tensor:
    """torchvision's ColorJitter per image: the four adjustments in a random order per image."""
    count = images.shape[0]
    factors = torch.stack(
        (
            _uniform(count, max(0.0, 1 - config.brightness), 1 + config.brightness, generator),
            _uniform(count, max(0.0, 1 - config.contrast), 1 + config.contrast, generator),
            _uniform(count, max(0.0, 1 - config.saturation), 1 + config.saturation, generator),
            _uniform(count, -config.hue, config.hue, generator),
        ),
        dim=1,
    )
    order = torch.rand(count, 4, generator=generator).argsort(dim=1).to(images.device)
    factors = factors.to(images.device)
    for position in range(4):
        # at each position every image gets exactly one of the four operations: fill a fresh
        # tensor operation by operation instead of copying the batch for each
        adjusted = torch.empty_like(images)
        for index, operation in enumerate(JITTER_OPERATIONS):
            selected = order[:, position] == index
            if selected.any():
                adjusted[selected] = operation(images[selected], factors[selected, index])
        images = adjusted
    return images


def blur_kernel_for(side: int) -> int:
    """An odd kernel of about a tenth of the view, at least 3 pixels (SimSiam: 23 at 224 px)."""
    return max(3, (side // 10) | 1)


def augment_batch(
    views: Tensor, config: PhotometricConfig, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Apply the recipe to each RGB view of ``(B, 3, H, W)``; returns the views (same dtype) and
    ``(B,)`` flags of which were mirrored. A flip changes pixels only, never recorded boxes."""
    count = views.shape[0]
    device = views.device
    images = views.float() / 255 if views.dtype == torch.uint8 else views.float()
    jitter = _chance(count, config.jitter_p, generator)
    gray = _chance(count, config.grayscale_p, generator)
    flipped = _chance(count, config.flip_p, generator)
    blur = _chance(count, config.blur_p, generator)
    sigmas = _uniform(count, *config.blur_sigma, generator)
    if jitter.any():
        jittered = color_jitter(images[jitter.to(device)], config, generator)
        images = images.clone()
        images[jitter.to(device)] = jittered
    images = _apply(images, gray.to(device), lambda x: grayscale(x).expand(-1, 3, -1, -1))
    images = torch.where(flipped.to(device).view(-1, 1, 1, 1), images.flip(-1), images)
    kernel = blur_kernel_for(views.shape[-1])
    images = _apply(
        images, blur.to(device), lambda x, s: gaussian_blur(x, s, kernel), sigmas.to(device)
    )
    if views.dtype == torch.uint8:
        return images.mul_(255).round_().clamp_(0, 255).to(torch.uint8), flipped
    return images.to(views.dtype), flipped


def augment(
    view: Tensor, config: PhotometricConfig, generator: torch.Generator | None = None
) -> tuple[Tensor, bool]:
    """:func:`augment_batch` for one view ``(3, H, W)``."""
    augmented, flipped = augment_batch(view.unsqueeze(0), config, generator)
    return augmented[0], bool(flipped[0])
