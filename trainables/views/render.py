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
    cover_x = _axis_coverage(
        (holes[:, 0] - frames[:, 0]) * scale_x, (holes[:, 2] - frames[:, 0]) * scale_x, size
    )
    cover_y = _axis_coverage(
        (holes[:, 1] - frames[:, 1]) * scale_y, (holes[:, 3] - frames[:, 1]) * scale_y, size
    )
    return (cover_y[:, :, None] * cover_x[:, None, :]).unsqueeze(1)


def hole_shorter_side(holes: Tensor, frames: Tensor, size: int) -> Tensor:
    """``(B,)`` the shorter side, in output pixels, of each hole in a ``size x size`` view cut
    from ``frames``."""
    width = (holes[:, 2] - holes[:, 0]) * size / (frames[:, 2] - frames[:, 0])
    height = (holes[:, 3] - holes[:, 1]) * size / (frames[:, 3] - frames[:, 1])
    return torch.minimum(width, height)


MIN_KERNEL = 3


def relative_blur(blur: float, shorter_side: Tensor) -> tuple[Tensor, Tensor]:
    """Per hole, the Gaussian kernel side and sigma of a blur whose +-3 sigma window spans
    ``blur`` of the hole's shorter side: sigma ``blur * side / 6`` and the kernel the largest
    odd integer no larger than ``blur * side``, at least ``MIN_KERNEL``."""
    extent = blur * shorter_side
    odd = 2 * torch.floor((extent - 1) / 2) + 1
    return odd.clamp_min(MIN_KERNEL).long(), extent / 6


def blur_fits(blur: float, shorter_side: float) -> bool:
    """Whether ``blur`` of a hole's shorter side spans a ``MIN_KERNEL`` px kernel."""
    return blur * shorter_side >= MIN_KERNEL


def smallest_fitting_blur(shorter_side: float) -> float:
    """The smallest ``blur`` that :func:`blur_fits` a hole of ``shorter_side`` output pixels
    (exactly, past any rounding error); above 1 when no blur in (0, 1] fits."""
    blur = MIN_KERNEL / shorter_side
    while not blur_fits(blur, shorter_side):
        blur = math.nextafter(blur, math.inf)
    while blur_fits(math.nextafter(blur, 0.0), shorter_side):
        blur = math.nextafter(blur, 0.0)
    return blur


def gaussian_taps(kernel_sizes: Tensor, sigmas: Tensor, width: int, dtype: torch.dtype) -> Tensor:
    """``(B, width)`` normalised 1-D Gaussians centred in ``width`` (odd) taps, each zero past
    its own kernel: torchvision's ``gaussian_blur`` kernels, padded to a common width."""
    half = width // 2
    offsets = torch.arange(-half, half + 1, dtype=dtype, device=sigmas.device)
    inside = offsets.abs()[None, :] <= (kernel_sizes[:, None] // 2).to(dtype)
    pdf = torch.exp(-0.5 * (offsets[None, :] / sigmas[:, None].to(dtype)) ** 2) * inside
    return pdf / pdf.sum(dim=1, keepdim=True)


def gaussian_blur_per_sample(images: Tensor, kernel_sizes: Tensor, sigmas: Tensor) -> Tensor:
    """Blur each float image of ``(B, C, H, W)`` with its own Gaussian (odd side
    ``kernel_sizes[i]``, ``sigmas[i]`` pixels) as torchvision's ``gaussian_blur`` blurs one
    image, but separably: reflect padding to the batch's largest kernel, whose taps past a
    smaller kernel are zero."""
    batch, channels, height, width = images.shape
    side = int(kernel_sizes.max())
    taps = gaussian_taps(
        kernel_sizes.to(images.device), sigmas.to(images.device), side, images.dtype
    )
    weights = taps.repeat_interleave(channels, dim=0)
    flat = F.pad(
        images.reshape(1, batch * channels, height, width), [side // 2] * 4, mode="reflect"
    )
    rows = F.conv2d(flat, weights[:, None, None, :], groups=batch * channels)
    both = F.conv2d(rows, weights[:, None, :, None], groups=batch * channels)
    return both.reshape(batch, channels, height, width)


def fill_holes(
    views: Tensor,
    mask: Tensor,
    fill: str,
    kernel_sizes: Tensor | None = None,
    sigmas: Tensor | None = None,
) -> Tensor:
    """Fill the masked region of each view: black (``zero``), blurred (``blur``) or not (``none``).

    The blur of view ``i`` is a Gaussian of side ``kernel_sizes[i]`` and ``sigmas[i]`` output
    pixels (see :func:`relative_blur`); blending by the coverage mask keeps the region's edges
    sub-pixel exact.
    """
    if fill == "none":
        return views
    source = to_float(views)
    mask = mask.to(device=source.device, dtype=source.dtype)
    if fill == "zero":
        filled = source * (1 - mask)
    elif fill == "blur":
        if kernel_sizes is None or sigmas is None:
            raise ValueError("fill='blur' needs each view's kernel_sizes and sigmas")
        blurred = gaussian_blur_per_sample(source, kernel_sizes, sigmas)
        filled = source * (1 - mask) + blurred * mask
    else:
        raise ValueError(f"fill={fill!r} is invalid: expected one of 'blur', 'none', 'zero'")
    return like_input(filled, views)
