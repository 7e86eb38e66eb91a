"""Image-folder datasets decoded lazily per item: ImageNet-100 and COCO images."""

from __future__ import annotations

import functools
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder

from trainables.data.files import preview
from trainables.data.in_memory import UNLABELLED

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
IMAGENET100_CLASS_FILE = "imagenet100_classes.txt"
IMAGENET_HELP = (
    "download ILSVRC2012 from image-net.org and arrange train/ and val/ as class folders: "
    "{root}/imagenet/{{train,val}}/<wnid>/*.JPEG"
)
COCO_HELP = "download {split}2017.zip from cocodataset.org and unzip it into {folder}"


def decode_rgb(path: str | Path) -> Tensor:
    """Any image file as ``uint8 [3, H, W]``; grayscale, palette and CMYK become RGB."""
    with Image.open(path) as image:
        pixels = np.array(image.convert("RGB"))
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()


@functools.cache
def imagenet100_wnids() -> tuple[str, ...]:
    """The 100 WordNet IDs of ImageNet-100 (Tian et al., CMC), in the published order."""
    text = resources.files(__package__).joinpath(IMAGENET100_CLASS_FILE).read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


class UnreadableImageWarning(UserWarning):
    """An image file that could not be decoded was skipped."""


class SkipsUnreadable:
    """Lazily decoded image folders meet broken files (truncated downloads, non-images named
    ``.jpg``) mid-epoch. Such a file is skipped: a warning names it (once), ``skipped`` counts
    it, and the next readable image takes its place so batches keep their size. The marks live
    in shared memory, so those made in DataLoader workers count too."""

    def _path(self, index: int) -> str:
        raise NotImplementedError

    def _item(self, index: int) -> tuple[Tensor, int]:
        raise NotImplementedError

    @property
    def unreadable(self) -> Tensor:
        """One flag per image; created (in shared memory) on first use, which must precede the
        DataLoader workers: :func:`trainables.pipeline.view_batches` sees to it."""
        if "_unreadable" not in self.__dict__:
            self._unreadable = torch.zeros(len(self), dtype=torch.bool).share_memory_()
        return self._unreadable

    @property
    def skipped(self) -> set[str]:
        return {self._path(index) for index in self.unreadable.nonzero().flatten().tolist()}

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        for offset in range(len(self)):
            candidate = (index + offset) % len(self)
            try:
                return self._item(candidate)
            except (OSError, ValueError, SyntaxError) as error:
                # PIL: UnidentifiedImageError, truncated data
                if not self.unreadable[candidate]:
                    self.unreadable[candidate] = True
                    warnings.warn(
                        f"skipping unreadable image {self._path(candidate)}: {error}",
                        UnreadableImageWarning,
                        stacklevel=2,
                    )
        raise FileNotFoundError(
            f"none of the {len(self)} images of {type(self).__name__} can be decoded"
        )


class ImageNet100Folder(SkipsUnreadable, ImageFolder):
    """An ImageNet split folder restricted to the 100 classes; labels index the sorted wnids.

    Class folders outside the 100 are ignored; a missing one of the 100 is an error, since
    labels would otherwise shift silently.
    """

    def __init__(self, split_folder: Path, help_text: str) -> None:
        self._help_text = help_text
        super().__init__(split_folder, loader=decode_rgb)

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        classes = sorted(imagenet100_wnids())
        missing = [wnid for wnid in classes if not Path(directory, wnid).is_dir()]
        if missing:
            raise FileNotFoundError(
                f"ImageNet-100 folder {directory} lacks {len(missing)} of the "
                f"{len(classes)} class folders ({preview(missing)}); {self._help_text}"
            )
        return classes, {wnid: index for index, wnid in enumerate(classes)}

    def _path(self, index: int) -> str:
        return self.samples[index][0]

    def _item(self, index: int) -> tuple[Tensor, int]:
        return ImageFolder.__getitem__(self, index)


class UnlabelledImageFolder(SkipsUnreadable, Dataset[tuple[Tensor, int]]):
    """The images directly inside one folder (sorted by file name), each labelled ``-1``."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def _path(self, index: int) -> str:
        return str(self.files[index])

    def _item(self, index: int) -> tuple[Tensor, int]:
        return decode_rgb(self.files[index]), UNLABELLED


def _image_files(folder: Path) -> list[Path]:
    candidates = (path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
    return sorted((path for path in candidates if path.is_file()), key=lambda path: path.name)


def load_imagenet100(root: Path, split: str, download: bool) -> ImageNet100Folder:
    """``root/imagenet/{train,val}/<wnid>/*``; cannot be downloaded automatically."""
    folder = root / "imagenet" / split
    help_text = IMAGENET_HELP.format(root=root)
    if not folder.is_dir():
        raise FileNotFoundError(f"ImageNet-100 {split} folder {folder} not found; {help_text}")
    return ImageNet100Folder(folder, help_text)


def load_coco(root: Path, split: str, download: bool) -> UnlabelledImageFolder:
    """``root/coco/{train,val}2017/*.jpg``; cannot be downloaded automatically."""
    folder = root / "coco" / f"{split}2017"
    help_text = COCO_HELP.format(split=split, folder=folder.parent)
    if not folder.is_dir():
        raise FileNotFoundError(f"COCO {split} folder {folder} not found; {help_text}")
    files = _image_files(folder)
    if not files:
        raise FileNotFoundError(
            f"COCO {split} folder {folder} holds no .jpg/.jpeg/.png images; {help_text}"
        )
    return UnlabelledImageFolder(files)
