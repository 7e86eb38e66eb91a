"""From source images to model-ready view pairs: spatial views, then photometric augmentation."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from trainables.photometric import PhotometricConfig, augment_batch
from trainables.views import ViewGeometry, ViewSampler
from trainables.views.boxes import DTYPE
from trainables.views.render import crop_resize

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ViewBatch:
    """``(B, 3, size, size)`` uint8 views, their geometry and ``(B, 2)`` horizontal flips."""

    view1: Tensor
    view2: Tensor
    geometry: ViewGeometry
    flipped: Tensor

    def __len__(self) -> int:
        return self.view1.shape[0]


@dataclass(frozen=True)
class TwoViewTransform:
    """The spatial sampler followed by the photometric recipe on each view independently."""

    sampler: ViewSampler
    photometric: PhotometricConfig

    def batch(self, images: Tensor, generator: torch.Generator | None = None) -> ViewBatch:
        """Views of a batch of same-sized images ``(B, 3, H, W)``."""
        view1, view2, geometry = self.sampler.batch(images, generator)
        view1, flip1 = augment_batch(view1, self.photometric, generator)
        view2, flip2 = augment_batch(view2, self.photometric, generator)
        return ViewBatch(view1, view2, geometry, torch.stack((flip1, flip2), dim=1))

    def __call__(self, image: Tensor, generator: torch.Generator | None = None) -> ViewBatch:
        """Views of one image ``(3, H, W)``, as a batch of one (for DataLoader workers).

        Renders with the sampler's per-sample path (images of any size); same views as
        ``batch`` for the same geometry.
        """
        view1, view2, geometry = self.sampler(image, generator)
        view1, flip1 = augment_batch(view1.unsqueeze(0), self.photometric, generator)
        view2, flip2 = augment_batch(view2.unsqueeze(0), self.photometric, generator)
        return ViewBatch(
            view1, view2, ViewGeometry.stack([geometry]), torch.stack((flip1, flip2), dim=1)
        )


def collate_view_batches(items: Sequence[ViewBatch]) -> ViewBatch:
    return ViewBatch(
        view1=torch.cat([item.view1 for item in items]),
        view2=torch.cat([item.view2 for item in items]),
        geometry=ViewGeometry.cat([item.geometry for item in items]),
        flipped=torch.cat([item.flipped for item in items]),
    )


def normalize(views: Tensor, device: torch.device, channels_last: bool = False) -> Tensor:
    """uint8 views to float, normalised with ImageNet statistics, on ``device``."""
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    views = views.to(device, non_blocking=True).float().div_(255).sub_(mean).div_(std)
    return views.contiguous(memory_format=torch.channels_last) if channels_last else views


def centre_square_boxes(height: Tensor, width: Tensor, crop: float = 1.0) -> Tensor:
    """``(B, 4)`` centred squares of side ``crop`` times each image's shorter side: the
    deterministic evaluation view (``crop`` 1 is the largest centred square)."""
    side = torch.minimum(height, width).to(DTYPE) * crop
    x0 = (width.to(DTYPE) - side) / 2
    y0 = (height.to(DTYPE) - side) / 2
    return torch.stack((x0, y0, x0 + side, y0 + side), dim=1)


def evaluation_view(images: Tensor, size: int, crop: float = 1.0) -> Tensor:
    """The centred square (of ``crop`` times the shorter side) of each image of ``(B, 3, H, W)``,
    resized to ``size``."""
    count, _, height, width = images.shape
    boxes = centre_square_boxes(torch.full((count,), height), torch.full((count,), width), crop)
    return crop_resize(images, boxes, size)


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of one sample's views in one epoch: a hash of ``(seed, epoch, index)``, so
    the views do not depend on which worker draws them, in which order, or whether the run
    resumed."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


class _ViewsOf(Dataset):
    def __init__(
        self, source: Dataset, indices: Tensor, transform: TwoViewTransform, seed: int, epoch: int
    ) -> None:
        self.source, self.indices, self.transform = source, indices, transform
        self.seed, self.epoch = seed, epoch

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> ViewBatch:
        index = int(self.indices[position])
        image, _ = self.source[index]
        return self.transform(image, sample_generator(self.seed, self.epoch, index))


class _EvalViewsOf(Dataset):
    def __init__(self, source: Dataset, count: int, size: int, crop: float) -> None:
        self.source, self.count, self.size, self.crop = source, count, size, crop

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image, label = self.source[index]
        return evaluation_view(image.unsqueeze(0), self.size, self.crop)[0], label


def in_memory_images(dataset: Dataset) -> Tensor | None:
    """The dataset as one uint8 tensor ``(N, 3, H, W)`` when it keeps one, else None."""
    images = getattr(dataset, "images", None)
    return images if isinstance(images, Tensor) else None


def view_batches(
    dataset: Dataset,
    indices: Tensor,
    transform: TwoViewTransform,
    batch_size: int,
    generator: torch.Generator,
    workers: int = 0,
    *,
    seed: int,
    epoch: int,
) -> Iterator[ViewBatch]:
    """View batches of ``dataset[indices]`` in the given order, the last partial batch dropped.

    In-memory datasets render each batch at once from ``generator``; image-folder datasets
    (images of varying size) render per image in DataLoader workers, each image's views from
    :func:`sample_generator` of ``(seed, epoch, index)``, the same for any worker count.
    """
    usable = len(indices) - len(indices) % batch_size
    images = in_memory_images(dataset)
    if images is not None:
        for start in range(0, usable, batch_size):
            yield transform.batch(images[indices[start : start + batch_size]], generator)
        return
    share_skip_marks(dataset)
    loader = DataLoader(
        _ViewsOf(dataset, indices[:usable], transform, seed, epoch),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate_view_batches,
        generator=generator,
        persistent_workers=False,
    )
    yield from loader


def share_skip_marks(dataset: Dataset) -> None:
    """Create a folder dataset's unreadable-image marks (shared memory) before DataLoader
    workers start, so that the files they skip are counted in this process."""
    getattr(dataset, "unreadable", None)


def evaluation_batches(
    dataset: Dataset,
    size: int,
    count: int,
    batch_size: int = 512,
    workers: int = 0,
    crop: float = 1.0,
) -> Iterator[tuple[Tensor, Tensor]]:
    """``(images, labels)`` of the first ``count`` items, as uint8 evaluation views of ``size``
    (see :func:`evaluation_view` for ``crop``)."""
    images = in_memory_images(dataset)
    if images is not None:
        labels = dataset.labels
        for start in range(0, count, batch_size):
            chunk = images[start : min(start + batch_size, count)]
            views = (
                chunk
                if chunk.shape[-2:] == (size, size) and crop == 1
                else evaluation_view(chunk, size, crop)
            )
            yield views, labels[start : start + len(chunk)]
        return
    share_skip_marks(dataset)
    loader = DataLoader(
        _EvalViewsOf(dataset, count, size, crop), batch_size=batch_size, num_workers=workers
    )
    for views, labels in loader:
        yield views, torch.as_tensor(labels)
