"""Benchmark 1: view-pair throughput of each view family against the usual reference pipeline.

Reference (lightly's and the official SimSiam CIFAR code): torchvision transforms on PIL images,
per sample in a DataLoader, twice per image: RandomResizedCrop + ColorJitter (p=0.8) +
RandomGrayscale (0.2) + horizontal flip, then to a uint8 tensor. Ours: the family's batched
geometry and rendering (``roi_align``) plus the batched photometric stage, one batch per
DataLoader item. Same images, same output size, same number of worker processes, timed side by
side. Target on CPU: at least 3x the reference's pairs/s.

    .venv/bin/python -m bench.views [--device cuda] [--workers 2] [--smoke]
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from bench.common import device_from, interleaved_seconds, machine, parser, table
from trainables.photometric import PhotometricConfig
from trainables.pipeline import TwoViewTransform
from trainables.views import make_views

FAMILIES = {
    "random_crop": {},
    "overlap": {"overlap": 0.5},
    "patch": {"patch": 0.3},
    "exclusive": {"gap": 0.1},
    "cutout": {"hole": 0.3, "fill": "zero"},
    "cutout-blur": {"hole": 0.3, "fill": "blur"},
}
# (output side, source side, images per timed pass)
SETTINGS = {32: (32, 4096), 224: (256, 256)}
SMOKE_SETTINGS = {32: (32, 128), 224: (256, 16)}
BATCH = 128


def source_images(count: int, side: int) -> torch.Tensor:
    """Smooth random colour fields (not flat noise, so resampling does real work)."""
    generator = torch.Generator().manual_seed(0)
    coarse = torch.randint(0, 256, (count, 3, 8, 8), generator=generator, dtype=torch.uint8).float()
    return (
        torch.nn.functional.interpolate(
            coarse, size=(side, side), mode="bilinear", align_corners=False
        )
        .round()
        .to(torch.uint8)
    )


class ReferencePairs(Dataset):
    def __init__(self, images: torch.Tensor, size: int) -> None:
        self.images = [
            Image.fromarray(np.ascontiguousarray(image.permute(1, 2, 0).numpy()))
            for image in images
        ]
        self.transform = T.Compose(
            [
                T.RandomResizedCrop(size, scale=(0.2, 1.0)),
                T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                T.RandomGrayscale(p=0.2),
                T.RandomHorizontalFlip(),
                T.PILToTensor(),
            ]
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = self.images[index]
        return self.transform(image), self.transform(image)


class BatchedPairs(Dataset):
    """One item per batch: the whole batch's views rendered at once."""

    def __init__(
        self,
        images: torch.Tensor,
        transform: TwoViewTransform,
        batch_size: int,
        device: torch.device,
    ) -> None:
        self.images, self.transform, self.batch_size, self.device = (
            images,
            transform,
            batch_size,
            device,
        )

    def __len__(self) -> int:
        return len(self.images) // self.batch_size

    def __getitem__(self, index: int):
        batch = self.images[index * self.batch_size : (index + 1) * self.batch_size].to(self.device)
        views = self.transform.batch(batch)
        return views.view1, views.view2


def drain(loader) -> int:
    pairs = 0
    for view1, _ in loader:
        pairs += len(view1)
    return pairs


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument(
        "--workers", type=int, default=2, help="DataLoader worker processes, for both pipelines"
    )
    args = arguments.parse_args()
    device = device_from(args.device)
    # on GPU ours renders on the device, in the main process
    workers = 0 if device.type == "cuda" else args.workers
    rows = []
    for size, (side, count) in (SMOKE_SETTINGS if args.smoke else SETTINGS).items():
        images = source_images(count, side)
        batch = min(BATCH, count)
        reference = ReferencePairs(images, size)
        candidates = {
            "reference": lambda: drain(
                DataLoader(reference, batch_size=batch, num_workers=args.workers)
            )
        }
        for family, params in FAMILIES.items():
            name, fill = ("cutout", params) if family.startswith("cutout") else (family, params)
            transform = TwoViewTransform(make_views(name, size=size, **fill), PhotometricConfig())
            pairs = BatchedPairs(
                images.to(device) if device.type == "cuda" else images, transform, batch, device
            )
            candidates[family] = lambda pairs=pairs: drain(
                DataLoader(pairs, batch_size=None, num_workers=workers)
            )
        seconds = interleaved_seconds(
            candidates,
            device,
            repeats=1 if args.smoke else args.repeats,
            warmup=0 if args.smoke else 1,
        )
        reference_rate = count / seconds["reference"]
        rows.append(
            [f"{size} px", "reference (torchvision, PIL)", f"{reference_rate:,.0f}", "1.00"]
        )
        for family in FAMILIES:
            rate = (count // batch * batch) / seconds[family]
            rows.append([f"{size} px", family, f"{rate:,.0f}", f"{rate / reference_rate:.2f}"])
    print(
        f"view throughput on {machine(device)}, "
        f"{args.workers} DataLoader workers for the reference, {workers} for ours"
    )
    print(table(["size", "pipeline", "pairs/s", "ratio to reference (target >= 3 on CPU)"], rows))


if __name__ == "__main__":
    main()
