"""Dataset loaders, each exercised on tiny files written in that dataset's real on-disk format."""

from __future__ import annotations

import dataclasses
import pickle
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainables.data import DATASETS, DatasetInfo, bundled, default_data_root, get_dataset
from trainables.data.image_folders import UnreadableImageWarning, imagenet100_wnids
from trainables.validation import ConfigError

CIFAR_SIDE = 32
STL_SIDE = 96


def _random_images(rng: np.random.Generator, count: int, side: int) -> np.ndarray:
    """``uint8 [count, 3, side, side]`` noise: no symmetry, so any transposition shows."""
    return rng.integers(0, 256, size=(count, 3, side, side), dtype=np.uint8)


def _pickle(path: Path, entry: dict) -> None:
    """The official files are Python 2 pickles that torchvision reads with latin1 into str keys."""
    path.write_bytes(pickle.dumps(entry, protocol=2))


# --------------------------------------------------------------------------------------- CIFAR


@pytest.fixture(scope="module")
def cifar10_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("cifar10")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(10)
    train_images, train_labels = [], []
    for batch in range(1, 6):
        images = _random_images(rng, 2, CIFAR_SIDE)
        labels = [int(v) for v in rng.integers(0, 10, size=2)]
        _pickle(
            folder / f"data_batch_{batch}",
            {
                "batch_label": f"training batch {batch} of 5",
                "labels": labels,
                "data": images.reshape(2, -1),
                "filenames": [f"img_{batch}_{i}.png" for i in range(2)],
            },
        )
        train_images.append(images)
        train_labels += labels
    test_images = _random_images(rng, 3, CIFAR_SIDE)
    test_labels = [9, 0, 4]
    test_batch = {"batch_label": "testing batch 1 of 1", "labels": test_labels}
    _pickle(folder / "test_batch", {**test_batch, "data": test_images.reshape(3, -1)})
    names = ["airplane", "automobile", "bird", "cat", "deer"]
    names += ["dog", "frog", "horse", "ship", "truck"]
    meta = {"num_cases_per_batch": 2, "label_names": names, "num_vis": 3072}
    _pickle(folder / "batches.meta", meta)
    return root, {
        "train": (np.concatenate(train_images), train_labels),
        "test": (test_images, test_labels),
    }


@pytest.fixture(scope="module")
def cifar100_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("cifar100")
    folder = root / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(100)
    expected = {}
    for split, count in (("train", 4), ("test", 3)):
        images = _random_images(rng, count, CIFAR_SIDE)
        fine = [int(v) for v in rng.integers(0, 100, size=count)]
        _pickle(
            folder / split,
            {
                "filenames": [f"{split}_{i}.png" for i in range(count)],
                "batch_label": f"{split} batch",
                "fine_labels": fine,
                "coarse_labels": [label // 5 for label in fine],
                "data": images.reshape(count, -1),
            },
        )
        expected[split] = (images, fine)
    fine_names = [f"fine{i}" for i in range(100)]
    coarse_names = [f"coarse{i}" for i in range(20)]
    _pickle(folder / "meta", {"fine_label_names": fine_names, "coarse_label_names": coarse_names})
    return root, expected


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar_round_trips_pixels_and_labels(
    request: pytest.FixtureRequest, name: str, split: str
) -> None:
    root, expected = request.getfixturevalue(f"{name}_root")
    images, labels = expected[split]
    ds = get_dataset(name, root=root, split=split)

    assert len(ds) == len(images)
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (len(images), 3, 32, 32)
    assert torch.equal(ds.images, torch.from_numpy(images))
    assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == labels
    for index in (0, len(images) - 1):
        image, label = ds[index]
        assert image.dtype == torch.uint8
        assert torch.equal(image, torch.from_numpy(images[index]))
        assert label == labels[index] and isinstance(label, int)


def test_cifar_accepts_str_root_and_offline_download_flag(cifar10_root: tuple[Path, dict]) -> None:
    root, expected = cifar10_root
    ds = get_dataset("cifar10", root=str(root), split="test", download=True)
    assert ds.labels.tolist() == expected["test"][1]
    assert ds.classes[0] == "airplane"


def test_cifar_with_a_missing_batch_names_it(
    tmp_path: Path, cifar10_root: tuple[Path, dict]
) -> None:
    source, _ = cifar10_root
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for file in (source / "cifar-10-batches-py").iterdir():
        if file.name != "test_batch":
            (folder / file.name).write_bytes(file.read_bytes())
    with pytest.raises(FileNotFoundError, match="test_batch"):
        get_dataset("cifar10", root=tmp_path, split="train")


# -------------------------------------------------------------------------------------- STL-10


def _write_stl_images(path: Path, images: np.ndarray) -> None:
    """The real files store each channel column-major: byte ``x * 96 + y`` is pixel ``(y, x)``."""
    path.write_bytes(np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes())


@pytest.fixture(scope="module")
def stl10_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("stl10")
    folder = root / "stl10_binary"
    folder.mkdir()
    rng = np.random.default_rng(96)
    gradient = np.broadcast_to(np.arange(STL_SIDE, dtype=np.uint8), (3, STL_SIDE, STL_SIDE))
    train = np.concatenate([gradient[None], _random_images(rng, 2, STL_SIDE)])
    test = _random_images(rng, 2, STL_SIDE)
    unlabeled = _random_images(rng, 2, STL_SIDE)
    _write_stl_images(folder / "train_X.bin", train)
    _write_stl_images(folder / "test_X.bin", test)
    _write_stl_images(folder / "unlabeled_X.bin", unlabeled)
    (folder / "train_y.bin").write_bytes(np.array([1, 10, 5], dtype=np.uint8).tobytes())
    (folder / "test_y.bin").write_bytes(np.array([3, 7], dtype=np.uint8).tobytes())
    classes = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(classes) + "\n")
    (folder / "fold_indices.txt").write_text("\n".join("0 1 2" for _ in range(10)) + "\n")
    return root, {
        "train": (train, [0, 9, 4]),
        "test": (test, [2, 6]),
        "unlabeled": (unlabeled, [-1, -1]),
    }


@pytest.mark.parametrize("split", ["train", "test", "unlabeled"])
def test_stl10_round_trips_pixels_in_row_major_orientation(
    stl10_root: tuple[Path, dict], split: str
) -> None:
    root, expected = stl10_root
    images, labels = expected[split]
    ds = get_dataset("stl10", root=root, split=split)

    assert len(ds) == len(images)
    assert ds.images.shape == (len(images), 3, 96, 96) and ds.images.dtype == torch.uint8
    assert torch.equal(ds.images, torch.from_numpy(images))
    assert ds.labels.tolist() == labels
    image, label = ds[1]
    assert torch.equal(image, torch.from_numpy(images[1])) and label == labels[1]


def test_stl10_horizontal_gradient_stays_horizontal(stl10_root: tuple[Path, dict]) -> None:
    root, _ = stl10_root
    image, label = get_dataset("stl10", root=root, split="train")[0]
    assert image[0, 0, :].tolist() == list(range(96))
    assert image[0, :, 0].tolist() == [0] * 96
    assert label == 0


# --------------------------------------------------------------------------------- ImageNet-100


def _class_colour(index: int) -> tuple[int, int, int]:
    return (index * 2, 255 - index * 2, (index * 37) % 256)


def _write_image(path: Path, colour: tuple[int, int, int] | int, size: tuple[int, int]) -> None:
    mode = "L" if isinstance(colour, int) else "RGB"
    Image.new(mode, size, colour).save(path)


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Solid-colour JPEGs, one colour per class (by sorted wnid), plus a non-listed class."""
    root = tmp_path_factory.mktemp("imagenet")
    for split, per_class in (("train", 2), ("val", 1)):
        for index, wnid in enumerate(sorted(imagenet100_wnids())):
            folder = root / "imagenet" / split / wnid
            folder.mkdir(parents=True)
            for image in range(per_class):
                _write_image(folder / f"{wnid}_{image}.JPEG", _class_colour(index), (10, 6))
        stranger = root / "imagenet" / split / "n99999999"
        stranger.mkdir()
        _write_image(stranger / "stranger.JPEG", (0, 0, 0), (10, 6))
    return root


def test_imagenet100_reads_the_100_classes_and_ignores_others(imagenet_root: Path) -> None:
    ds = get_dataset("imagenet100", root=imagenet_root, split="train")
    assert len(ds) == 200
    assert ds.classes == sorted(imagenet100_wnids())
    assert sorted(set(ds.targets)) == list(range(100))
    for index in (0, 1, 57, 199):
        image, label = ds[index]
        assert image.dtype == torch.uint8 and image.shape == (3, 6, 10)
        mean_colour = image.double().mean(dim=(1, 2))
        class_colour = torch.tensor(_class_colour(label), dtype=torch.double)
        assert torch.allclose(mean_colour, class_colour, atol=3)


@pytest.mark.parametrize("split", ["val", "test"])
def test_imagenet100_test_is_an_alias_of_val(imagenet_root: Path, split: str) -> None:
    ds = get_dataset("imagenet100", root=imagenet_root, split=split)
    assert len(ds) == 100
    assert [label for _, label in ds.samples] == list(range(100))


def test_imagenet100_missing_class_folders_are_named(tmp_path: Path) -> None:
    present = sorted(imagenet100_wnids())[:3]
    for wnid in present:
        (tmp_path / "imagenet" / "train" / wnid).mkdir(parents=True)
        _write_image(tmp_path / "imagenet" / "train" / wnid / "a.JPEG", (1, 2, 3), (4, 4))
    first_missing = sorted(imagenet100_wnids())[3]
    with pytest.raises(FileNotFoundError, match=rf"97 of the 100.*{first_missing}.*image-net\.org"):
        get_dataset("imagenet100", root=tmp_path, split="train")


def test_imagenet100_class_list_is_the_cmc_subset() -> None:
    wnids = imagenet100_wnids()
    assert len(wnids) == 100 and len(set(wnids)) == 100
    assert all(re.fullmatch(r"n\d{8}", wnid) for wnid in wnids)
    assert wnids[:10] == (
        "n02869837", "n01749939", "n02488291", "n02107142", "n13037406",
        "n02091831", "n04517823", "n04589890", "n03062245", "n01773797",
    )  # fmt: skip


# ----------------------------------------------------------------------------------------- COCO


@pytest.fixture()
def coco_root(tmp_path: Path) -> Path:
    folder = tmp_path / "coco" / "train2017"
    folder.mkdir(parents=True)
    _write_image(folder / "000000000009.jpg", (200, 30, 30), (10, 6))
    _write_image(folder / "000000000025.JPEG", (30, 200, 30), (5, 7))
    _write_image(folder / "000000000030.png", 77, (9, 4))
    (folder / "LICENSE.txt").write_text("not an image")
    (folder / "nested.jpg").mkdir()
    return tmp_path


def test_coco_reads_sorted_images_as_unlabelled_rgb(coco_root: Path) -> None:
    ds = get_dataset("coco", root=coco_root, split="train")
    assert len(ds) == 3
    shapes = [ds[i][0].shape for i in range(3)]
    assert shapes == [(3, 6, 10), (3, 7, 5), (3, 4, 9)]
    assert all(ds[i][1] == -1 for i in range(3))
    grey, _ = ds[2]
    assert torch.equal(grey, torch.full((3, 4, 9), 77, dtype=torch.uint8))
    red, _ = ds[0]
    assert red[0].double().mean() > 150 > red[1].double().mean()


def test_coco_empty_folder_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "coco" / "val2017"
    folder.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=re.escape(str(folder))):
        get_dataset("coco", root=tmp_path, split="val")


# -------------------------------------------------------------------------------------- bundled


def test_digits_split_is_fixed_and_stratified() -> None:
    train, test = get_dataset("digits", split="train"), get_dataset("digits", split="test")
    assert (len(train), len(test)) == (1347, 450)
    for ds in (train, test):
        assert ds.images.shape[1:] == (3, 32, 32) and ds.images.dtype == torch.uint8
        assert torch.equal(ds.images, ds.images[:, :1].expand_as(ds.images))
        assert ds.images.min() == 0 and ds.images.max() == 255
        assert set(ds.labels.tolist()) == set(range(10))
    train_counts = torch.bincount(train.labels, minlength=10).double()
    test_counts = torch.bincount(test.labels, minlength=10).double()
    assert torch.all((test_counts / (train_counts + test_counts) - 0.25).abs() < 0.01)
    image, label = test[0]
    assert image.shape == (3, 32, 32) and isinstance(label, int) and 0 <= label < 10


def test_bundled_datasets_are_deterministic_across_rebuilds(tmp_path: Path) -> None:
    names = ("digits", "digit-scenes")
    before = {name: get_dataset(name, root=tmp_path, split="test") for name in names}
    bundled._digits.cache_clear()
    bundled._digit_scenes.cache_clear()
    after = {name: get_dataset(name, split="test") for name in names}
    for name in before:
        assert torch.equal(before[name].images, after[name].images)
        assert torch.equal(before[name].labels, after[name].labels)
    assert before["digit-scenes"].objects == after["digit-scenes"].objects


@pytest.mark.parametrize(("split", "count"), [("train", 2000), ("test", 500)])
def test_digit_scenes_hold_2_to_4_distinct_digits_inside_the_canvas(split: str, count: int) -> None:
    ds = get_dataset("digit-scenes", split=split)
    assert len(ds) == count and len(ds.objects) == count
    assert ds.images.shape == (count, 3, 64, 64) and ds.images.dtype == torch.uint8
    assert torch.all(ds.labels == -1) and ds[0][1] == -1
    covered = torch.zeros(count, 64, 64, dtype=torch.bool)
    for scene, objects in enumerate(ds.objects):
        assert 2 <= len(objects) <= 4
        assert len({label for label, *_ in objects}) == len(objects)
        for label, x0, y0, x1, y1 in objects:
            assert 0 <= label < 10
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            assert x1 - x0 == y1 - y0 and 20 <= x1 - x0 <= 32
            assert ds.images[scene, :, y0:y1, x0:x1].amax() > 0
            covered[scene, y0:y1, x0:x1] = True
    assert torch.all(ds.images.amax(dim=1)[~covered] == 0)


def test_digit_scenes_splits_differ() -> None:
    train = get_dataset("digit-scenes", split="train")
    test = get_dataset("digit-scenes", split="test")
    assert not torch.equal(train.images[:500], test.images)


# ------------------------------------------------------------------------- registry and errors


def test_registry_describes_every_dataset() -> None:
    evaluations = {name: info.default_eval for name, info in DATASETS.items()}
    assert evaluations == {
        "cifar10": "cifar10", "cifar100": "cifar100", "stl10": "stl10",
        "imagenet100": "imagenet100", "coco": "cifar10",
        "digits": "digits", "digit-scenes": "digits",
        "patterns": "patterns", "pattern-scenes": "patterns",
    }  # fmt: skip
    for name, info in DATASETS.items():
        assert isinstance(info, DatasetInfo) and info.name == name
        assert set(info.labelled_splits) <= set(info.splits)
        assert (info.num_classes is None) == (not info.labelled_splits)
        target = DATASETS[info.default_eval]
        assert target.labelled_splits and target.num_classes
    assert DATASETS["stl10"].labelled_splits == ("train", "test")
    assert DATASETS["coco"].scene_centric and DATASETS["digit-scenes"].scene_centric
    assert DATASETS["digits"].bundled and not DATASETS["cifar10"].bundled
    with pytest.raises(dataclasses.FrozenInstanceError):
        DATASETS["cifar10"].name = "other"  # type: ignore[misc]


def test_unknown_dataset_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cifar10") as caught:
        get_dataset("imagenet1k", root=tmp_path / "absent")
    assert caught.value.field == "dataset" and "dataset" in str(caught.value)
    assert "imagenet1k" in str(caught.value)


def test_unknown_split_is_checked_before_the_filesystem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'train'") as caught:
        get_dataset("cifar10", root=tmp_path / "absent", split="val")
    assert caught.value.field == "split" and "'val'" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "expected_path", "advice"),
    [
        ("cifar10", "cifar-10-batches-py", "download=True"),
        ("cifar100", "cifar-100-python", "download=True"),
        ("stl10", "stl10_binary", "download=True"),
        ("imagenet100", "imagenet/train", "image-net.org"),
        ("coco", "coco/train2017", "cocodataset.org"),
    ],
)
def test_missing_data_names_the_expected_path(
    tmp_path: Path, name: str, expected_path: str, advice: str
) -> None:
    root = tmp_path / "absent"
    with pytest.raises(FileNotFoundError) as caught:
        get_dataset(name, root=root, split="train")
    message = str(caught.value)
    assert str(root / expected_path) in message and advice in message
    assert not root.exists()


def test_default_data_root_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, cifar10_root: tuple[Path, dict]
) -> None:
    monkeypatch.delenv("STUDY_DATA_ROOT", raising=False)
    assert default_data_root() == Path("data")
    root, expected = cifar10_root
    monkeypatch.setenv("STUDY_DATA_ROOT", str(root))
    assert default_data_root() == root
    assert get_dataset("cifar10", split="test").labels.tolist() == expected["test"][1]


def _corrupt(path: Path) -> None:
    """A truncated download: the first few bytes of a real image."""
    path.write_bytes(path.read_bytes()[:20])


def test_a_corrupted_coco_image_is_skipped_named_and_counted(coco_root: Path) -> None:
    broken = coco_root / "coco" / "train2017" / "000000000025.JPEG"
    _corrupt(broken)
    ds = get_dataset("coco", root=coco_root, split="train")
    with pytest.warns(UnreadableImageWarning, match=re.escape(str(broken))):
        images = [ds[index][0] for index in range(len(ds))]
    assert ds.skipped == {str(broken)}
    assert torch.equal(images[1], images[2]), "the next readable image takes the broken one's place"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds[1]  # warned about once


def test_a_corrupted_imagenet_image_is_skipped_and_counted(
    imagenet_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "copy"
    shutil.copytree(imagenet_root, root)
    ds = get_dataset("imagenet100", root=root, split="val")
    broken = Path(ds.samples[5][0])
    _corrupt(broken)
    with pytest.warns(UnreadableImageWarning, match=re.escape(broken.name)):
        image, label = ds[5]
    assert label == 6 and ds.skipped == {str(broken)}


@pytest.mark.parametrize("loader_workers", [0, 2])
def test_training_counts_the_skipped_images(
    coco_root: Path, tmp_path: Path, loader_workers: int
) -> None:
    """Also when DataLoader worker processes meet the broken files."""
    from trainables.recipes import recipe
    from trainables.train import train

    folder = coco_root / "coco" / "train2017"
    for index in range(13):
        _write_image(folder / f"extra_{index:02d}.jpg", (index * 19, 90, 200 - index * 9), (40, 40))
    _corrupt(folder / "extra_03.jpg")
    _corrupt(folder / "extra_07.jpg")
    config = recipe(
        "digits",
        **{
            "data.dataset": "coco",
            "data.root": str(coco_root),
            "data.eval_dataset": "digits",
            "data.eval_limit": 50,
            "epochs": 1,
            "batch_size": 8,
            "views.size": 16,
            "loader_workers": loader_workers,
        },
    )
    if loader_workers:
        (metrics,) = train(config, workdir=tmp_path / "run")  # the warnings are the workers'
    else:
        with pytest.warns(UnreadableImageWarning):
            (metrics,) = train(config, workdir=tmp_path / "run")
    assert metrics["skipped_images"] == 2
