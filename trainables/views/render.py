"""Rendering boxes to pixels: sub-pixel crop-and-resize and cutout fills.

Two crop-and-resize paths give the same views for the same boxes: ``crop_resize`` renders a batch
of same-sized images with ``roi_align``; ``crop_resize_one`` renders one image of any size with
``grid_sample`` (DataLoader workers, tests, small images).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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


def _bin_samples(low: Tensor, high: Tensor, size: int) -> tuple[Tensor, int]:
    """Sample positions along one axis of a box, as roi_align(aligned=True, sampling_ratio=-1)
    places them: bin ``j`` of ``[low, high]`` averages ``n = ceil(bin width)`` (at least 1)
    samples at ``low + bin * (j + (i + 0.5) / n)``. Returns the ``size * n`` positions, bin-major,
    in continuous coordinates (pixel ``k`` is centred at ``k + 0.5``), and ``n``.

    ``n`` is computed in the dtype of ``low``, with roi_align's arithmetic (the box shifted by
    half a pixel), so that both paths take the same number of samples for the same box.
    """
    shifted_width = ((high - 0.5) - (low - 0.5)) / size
    count = max(1, math.ceil(float(shifted_width)))
    low, high = low.double(), high.double()
    bins = torch.arange(size, dtype=torch.float64, device=low.device)
    within = (torch.arange(count, dtype=torch.float64, device=low.device) + 0.5) / count
    return low + (high - low) / size * (bins[:, None] + within[None, :]).flatten(), count


def crop_resize_one(image: Tensor, box: Tensor, size: int) -> Tensor:
    """Crop ``box`` from one image ``(C, H, W)`` and resize it to ``(C, size, size)``.

    The per-sample counterpart of ``crop_resize``, with the same definition of an output pixel
    (the mean of bilinear samples inside its bin) but its own implementation: bilinear
    ``grid_sample`` at every sample position, then a mean over each bin's ``n_y x n_x``
    samples. Boxes lie inside the image, where clamping samples to the border pixels
    (``padding_mode="border"``) is what roi_align does.
    """
    source = to_float(image)
    height, width = source.shape[-2:]
    corners = box.to(device=source.device, dtype=source.dtype)
    xs, count_x = _bin_samples(corners[0], corners[2], size)
    ys, count_y = _bin_samples(corners[1], corners[3], size)
    # grid_sample(align_corners=False) reads the normalised g at continuous x = (g + 1) * W / 2.
    grid_x = (2 * xs / width - 1).to(source.dtype)
    grid_y = (2 * ys / height - 1).to(source.dtype)
    grid = torch.stack(torch.meshgrid(grid_y, grid_x, indexing="ij")[::-1], dim=-1)
    samples = F.grid_sample(
        source[None], grid[None], mode="bilinear", padding_mode="border", align_corners=False
    )
    crop = F.avg_pool2d(samples, kernel_size=(count_y, count_x))[0]
    return like_input(crop, image)


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
