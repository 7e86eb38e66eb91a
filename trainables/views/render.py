"""Rendering boxes to pixels: sub-pixel crop-and-resize and cutout fills, batched."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision.ops import roi_align
from torchvision.transforms.v2 import functional as TF


def to_float(images: Tensor) -> Tensor:
    return images.float() if images.dtype == torch.uint8 else images


def like_input(rendered: Tensor, reference: Tensor) -> Tensor:
    """Cast a float rendering back to the dtype of the source images."""
    if reference.dtype == torch.uint8:
        return rendered.round().clamp(0, 255).to(torch.uint8)
    return rendered.to(reference.dtype)


def crop_resize(images: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Crop each box from its image and resize it to ``size x size``.

    ``images`` is ``(B, C, H, W)`` and ``boxes`` ``(B, 4)`` in continuous pixel coordinates.
    Uses ``roi_align(aligned=True)`` so that the output pixel ``(i, j)`` is the average of
    bilinear samples inside its bin ``[x0 + j * bw, x0 + (j + 1) * bw]`` of the box: upsampling
    is bilinear and downsampling averages several samples per bin (anti-aliased).
    """
    indexed = torch.cat(
        (torch.arange(len(boxes), dtype=boxes.dtype, device=boxes.device)[:, None], boxes), dim=1
    )
    source = to_float(images)
    crops = roi_align(
        source,
        indexed.to(device=source.device, dtype=source.dtype),
        output_size=(size, size),
        spatial_scale=1.0,
        sampling_ratio=-1,
        aligned=True,
    )
    return like_input(crops, images)


def _axis_coverage(low: Tensor, high: Tensor, size: int) -> Tensor:
    """``(B, size)``: the fraction of each unit cell ``[j, j + 1]`` covered by ``[low, high]``."""
    cells = torch.arange(size, dtype=low.dtype, device=low.device)
    left = torch.maximum(cells, low[:, None])
    right = torch.minimum(cells + 1, high[:, None])
    return (right - left).clamp(0, 1)


def hole_mask(holes: Tensor, frames: Tensor, size: int) -> Tensor:
    """``(B, 1, size, size)`` anti-aliased mask of each hole inside a view cut from ``frames``.

    Each value is the fraction of the output pixel covered by the hole, so the mask sums to the
    hole's area in output pixels.
    """
    scale_x = size / (frames[:, 2] - frames[:, 0])
    scale_y = size / (frames[:, 3] - frames[:, 1])
    cover_x = _axis_coverage((holes[:, 0] - frames[:, 0]) * scale_x, (holes[:, 2] - frames[:, 0]) * scale_x, size)
    cover_y = _axis_coverage((holes[:, 1] - frames[:, 1]) * scale_y, (holes[:, 3] - frames[:, 1]) * scale_y, size)
    return (cover_y[:, :, None] * cover_x[:, None, :]).unsqueeze(1)


def blur_kernel_size(sigma: float) -> int:
    """Odd Gaussian kernel side covering +-3 sigma."""
    return 2 * math.ceil(3 * sigma) + 1


def fill_holes(views: Tensor, mask: Tensor, fill: str, blur_sigma: float) -> Tensor:
    """Fill the masked region of each view: black (``zero``), blurred (``blur``) or not (``none``).

    The blur is a Gaussian of ``blur_sigma`` output pixels; blending by the coverage mask keeps
    the region's edges sub-pixel exact.
    """
    if fill == "none":
        return views
    source = to_float(views)
    mask = mask.to(device=source.device, dtype=source.dtype)
    if fill == "zero":
        filled = source * (1 - mask)
    elif fill == "blur":
        kernel = blur_kernel_size(blur_sigma)
        blurred = TF.gaussian_blur(source, kernel_size=[kernel, kernel], sigma=[blur_sigma, blur_sigma])
        filled = source * (1 - mask) + blurred * mask
    else:
        raise ValueError(f"fill={fill!r} is invalid: expected one of 'blur', 'none', 'zero'")
    return like_input(filled, views)
