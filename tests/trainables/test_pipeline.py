import numpy as np
import pytest
import torch
from PIL import Image

from trainables.data import get_dataset
from trainables.photometric import PhotometricConfig
from trainables.pipeline import (
    TwoViewTransform,
    evaluation_batches,
    evaluation_view,
    normalize,
    view_batches,
)
from trainables.recipes import recipe
from trainables.train import train
from trainables.views import make_views


def write_coco(root, sizes):
    folder = root / "coco" / "train2017"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index, (height, width) in enumerate(sizes):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:012d}.jpg")
    return root


def test_in_memory_batches_render_whole_batches_and_drop_the_remainder():
    digits = get_dataset("digits")
    transform = TwoViewTransform(make_views("patch", patch=0.3, size=16), PhotometricConfig())
    batches = list(
        view_batches(
            digits,
            torch.arange(70),
            transform,
            32,
            torch.Generator().manual_seed(0),
            seed=0,
            epoch=0,
        )
    )
    assert [len(batch) for batch in batches] == [32, 32]
    assert batches[0].view1.shape == (32, 3, 16, 16) and batches[0].view1.dtype == torch.uint8
    assert batches[0].geometry.boxes.shape == (32, 2, 4)


def test_image_folder_batches_handle_images_of_different_sizes(tmp_path):
    root = write_coco(tmp_path, [(40, 60), (64, 48), (50, 50), (33, 90), (80, 80)])
    coco = get_dataset("coco", root=root)
    transform = TwoViewTransform(make_views("overlap", overlap=0.2, size=24), PhotometricConfig())
    batches = list(
        view_batches(
            coco, torch.arange(5), transform, 2, torch.Generator().manual_seed(0), seed=0, epoch=0
        )
    )
    assert [len(batch) for batch in batches] == [2, 2]
    sizes = torch.cat([batch.geometry.image_size for batch in batches])
    assert sizes.tolist() == [[40, 60], [64, 48], [50, 50], [33, 90]]
    assert all(
        torch.allclose(batch.geometry.overlap, torch.tensor(0.2, dtype=torch.float64))
        for batch in batches
    )


def test_one_image_transform_renders_per_sample_what_batch_renders(monkeypatch):
    image = torch.randint(
        0, 256, (3, 45, 70), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    for family, params in (
        ("overlap", {"overlap": 0.3}),
        ("cutout", {"hole": 0.3, "fill": "blur"}),
    ):
        flip_only = PhotometricConfig(jitter_p=0.0, grayscale_p=0.0, flip_p=0.5)
        transform = TwoViewTransform(make_views(family, size=24, **params), flip_only)
        batched = transform.batch(image[None], torch.Generator().manual_seed(3))
        with monkeypatch.context() as patched:
            patched.setattr("trainables.views.sampler.crop_resize", None)  # per-sample path only
            single = transform(image, torch.Generator().manual_seed(3))
        assert torch.equal(single.geometry.boxes, batched.geometry.boxes)
        assert torch.equal(single.flipped, batched.flipped) and len(single) == 1
        for got, want in ((single.view1, batched.view1), (single.view2, batched.view2)):
            assert got.shape == want.shape == (1, 3, 24, 24) and got.dtype == torch.uint8
            assert (got.int() - want.int()).abs().max() <= 1


def test_evaluation_view_is_the_centred_square():
    image = torch.arange(6 * 10, dtype=torch.float32).view(1, 1, 6, 10).expand(1, 3, 6, 10)
    view = evaluation_view(image, 6)
    assert torch.equal(view, image[..., :, 2:8])
    images, labels = next(evaluation_batches(get_dataset("digits", split="test"), 32, 10))
    assert images.shape == (10, 3, 32, 32) and labels.shape == (10,)


def test_normalize_gives_float_standardised_views():
    views = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    normalised = normalize(views, torch.device("cpu"))
    assert normalised.dtype == torch.float32
    assert torch.allclose(
        normalised[0, :, 0, 0],
        (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225]),
    )


def test_trains_on_scene_folder_and_evaluates_on_objects(tmp_path):
    root = write_coco(tmp_path, [(48 + 4 * i, 64 - 2 * i) for i in range(12)])
    config = recipe(
        "digits",
        **{
            "data.dataset": "coco",
            "data.eval_dataset": "digits",
            "data.root": str(root),
            "data.eval_limit": 100,
            "views.family": "overlap",
            "views.params": {"overlap": 0.3},
            "views.size": 16,
            "margin.mode": "distance",
            "margin.k": 2.0,
            "batch_size": 4,
            "epochs": 1,
        },
    )
    (metrics,) = train(config, workdir=tmp_path / "run")
    assert 0 <= metrics["knn_top1"] <= 1
    assert metrics["phi_mean"] > 0 and metrics["distance_mean"] > metrics["phi_mean"]


def folder_views(dataset, order, workers, seed=5, epoch=2):
    transform = TwoViewTransform(make_views("overlap", overlap=0.3, size=16), PhotometricConfig())
    batches = view_batches(
        dataset,
        order,
        transform,
        2,
        torch.Generator().manual_seed(0),
        workers,
        seed=seed,
        epoch=epoch,
    )
    views = {}
    for batch in batches:
        for row in range(len(batch)):
            views[len(views)] = (batch.view1[row], batch.view2[row], batch.geometry.boxes[row])
    return [views[position] for position in range(len(views))]


def test_folder_views_depend_on_seed_epoch_and_image_not_on_workers_or_order(tmp_path):
    coco = get_dataset(
        "coco", root=write_coco(tmp_path, [(40 + 3 * i, 60 - 2 * i) for i in range(6)])
    )
    order = torch.tensor([4, 1, 5, 0, 2, 3])
    in_process = folder_views(coco, order, workers=0)
    for got, want in zip(folder_views(coco, order, workers=2), in_process):
        assert all(torch.equal(a, b) for a, b in zip(got, want)), (
            "two loader workers draw the same views"
        )
    reordered = folder_views(coco, order.flip(0), workers=0)
    for position, index in enumerate(order.tolist()):
        twin = reordered[order.flip(0).tolist().index(index)]
        assert all(torch.equal(a, b) for a, b in zip(twin, in_process[position])), (
            "an image's views follow it"
        )
    other_epoch = folder_views(coco, order, workers=0, epoch=3)
    assert not any(torch.equal(a[2], b[2]) for a, b in zip(other_epoch, in_process)), (
        "each epoch draws anew"
    )


def test_a_folder_run_resumed_with_other_workers_matches_the_uninterrupted_run(tmp_path):
    root = write_coco(tmp_path, [(48 + 4 * i, 64 - 2 * i) for i in range(8)])
    config = recipe(
        "digits",
        **{
            "data.dataset": "coco",
            "data.eval_dataset": "digits",
            "data.root": str(root),
            "data.eval_limit": 50,
            "views.family": "overlap",
            "views.params": {"overlap": 0.3},
            "views.size": 16,
            "knn.k": 5,
            "batch_size": 4,
            "epochs": 2,
            "loader_workers": 0,
        },
    )
    uninterrupted = train(config, workdir=tmp_path / "full")

    class Stopped(Exception):
        pass

    def stop_after_first_epoch(metrics, checkpoint):
        raise Stopped

    with pytest.raises(Stopped):
        train(config, stop_after_first_epoch, workdir=tmp_path / "stopped")
    resumed = train(
        config.replace(loader_workers=2),
        resume_from=tmp_path / "stopped" / "epoch_0001",
        workdir=tmp_path / "resumed",
    )
    assert [metrics["epoch"] for metrics in resumed] == [2]
    for name in ("loss", "overlap_mean", "distance_mean"):
        assert resumed[0][name] == pytest.approx(uninterrupted[1][name], rel=1e-5), name


def test_evaluation_view_crops_the_standard_fraction_of_the_shorter_side():
    from trainables.data import DATASETS
    from trainables.data.registry import IMAGENET_EVAL_CROP

    framed = torch.full((1, 3, 64, 96), 200, dtype=torch.uint8)
    framed[..., 4:60, 20:76] = 10  # a 56-px square inside a 4-px frame of the 64-px centre square
    assert torch.equal(
        evaluation_view(framed, 56, crop=56 / 64), torch.full((1, 3, 56, 56), 10, dtype=torch.uint8)
    )
    assert (evaluation_view(framed, 64) == 200).any(), "the whole centre square keeps the frame"
    assert DATASETS["imagenet100"].eval_crop == IMAGENET_EVAL_CROP == 224 / 256
    assert {name: info.eval_crop for name, info in DATASETS.items() if name != "imagenet100"} == {
        name: 1.0 for name in DATASETS if name != "imagenet100"
    }, "32/96 px datasets are evaluated whole, as their published protocols do"
