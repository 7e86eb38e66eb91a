"""The training function under Ray Train V2: DDP over two CPU workers, and resumption."""

import os
from pathlib import Path

import pytest
import ray
import torch
from PIL import Image
from ray.train.torch import TorchTrainer
from ray.train.v2._internal.constants import get_env_vars_to_propagate

import trainables.train as training
from trainables.data import get_dataset
from trainables.ray_trainable import (
    NODES_KEY,
    POLL_INTERVAL_VARIABLE,
    DatasetShare,
    ScalingSpec,
    TrainerSpec,
    build_trainer,
    shared_loader,
)
from trainables.recipes import recipe
from trainables.train import load_checkpoint
from trainables.validation import ConfigError
from trainables.view_stats import ViewHistograms

# The tests asking for `local_ray` run on the session's shared local Ray (tests/conftest.py).

IMAGES = 256
"""Training images per epoch (``data.limit``), even so that two ranks split them exactly."""
WORLD_SIZE = 2


def quick(epochs):
    return recipe(
        "digits",
        **{"epochs": epochs, "data.limit": IMAGES, "data.eval_limit": 200, "batch_size": 32},
    )


def pairs_trained_by_rank_0(checkpoint) -> tuple[int, int]:
    """The pairs in the checkpoint's view histograms (rank 0's shard, every epoch so far), and
    the epochs they count."""
    with checkpoint.as_directory() as directory:
        histograms = ViewHistograms.load(directory)
    return int(histograms.counts["overlap"].sum()), histograms.epochs


def test_ddp_over_two_workers_reports_and_resumes_from_its_checkpoint(local_ray, tmp_path):
    spec = TrainerSpec(scaling=ScalingSpec(num_workers=WORLD_SIZE), storage_path=str(tmp_path))
    first = build_trainer(quick(1), spec, name="ddp").fit()
    assert first.error is None
    assert first.metrics["epoch"] == 1 and 0 <= first.metrics["knn_top1"] <= 1
    nodes = first.metrics[NODES_KEY].split(",")
    assert len(nodes) == WORLD_SIZE, "one node ID per rank, gathered from the workers"
    assert pairs_trained_by_rank_0(first.checkpoint) == (IMAGES // WORLD_SIZE, 1), (
        "rank 0 trained its half of the epoch"
    )
    with first.checkpoint.as_directory() as directory:
        weights_after_one = load_checkpoint(directory)["model"]

    # Same name and storage: Train restores the run and the workers start from its checkpoint.
    # A different lr would change epoch 1's loss had the run started over.
    second = build_trainer(quick(2).replace(**{"optim.base_lr": 0.05}), spec, name="ddp").fit()
    assert second.error is None
    history = second.metrics_dataframe.sort_values("epoch")
    assert history["epoch"].tolist() == [1, 2]
    assert history["loss"].iloc[0] == pytest.approx(first.metrics["loss"], rel=1e-9)
    assert len(second.metrics[NODES_KEY].split(",")) == WORLD_SIZE
    with second.checkpoint.as_directory() as directory:
        state = load_checkpoint(directory)
    assert state["epoch"] == 2
    assert pairs_trained_by_rank_0(second.checkpoint) == (2 * IMAGES // WORLD_SIZE, 2)
    assert any(
        not torch.equal(state["model"][key], weights_after_one[key]) for key in weights_after_one
    )


class ShardSeen(Exception):
    """Raised in place of an epoch's batches: the test has the images the rank was given."""


def shard_of(rank: int, world_size: int, monkeypatch, workdir: Path) -> list[int]:
    """The images ``train`` hands rank ``rank`` of ``world_size`` for its first epoch: the real
    training function, told its rank as ``torch.distributed`` would tell it, stopped at the
    batches (no process group, so DDP's wrapper is left out)."""
    seen: list[int] = []

    def record(dataset, order, *args, **kwargs):
        seen.extend(order.tolist())
        raise ShardSeen

    with monkeypatch.context() as patch:
        patch.setattr(
            training.Runtime,
            "detect",
            classmethod(lambda cls, device: cls(torch.device("cpu"), rank, world_size)),
        )
        patch.setattr(torch.nn.parallel, "DistributedDataParallel", lambda model, **_: model)
        patch.setattr(training, "view_batches", record)
        with pytest.raises(ShardSeen):
            training.train(quick(1), workdir=workdir)
    return seen


def test_the_ranks_of_a_ddp_run_train_on_disjoint_shards_that_cover_the_epoch(
    monkeypatch, tmp_path
):
    shards = [shard_of(rank, WORLD_SIZE, monkeypatch, tmp_path) for rank in range(WORLD_SIZE)]
    assert [len(shard) for shard in shards] == [IMAGES // WORLD_SIZE] * WORLD_SIZE
    shared = set(shards[0]) & set(shards[1])
    assert not shared, f"{len(shared)} images are in both ranks' shards"
    assert sorted(shards[0] + shards[1]) == list(range(IMAGES)), "every image once an epoch"


def test_scaling_spec_validates_and_packs_gpus():
    config = ScalingSpec(num_workers=2, gpus_per_worker=0.25).scaling_config()
    assert config.use_gpu and config.resources_per_worker == {"CPU": 1.0, "GPU": 0.25}
    with pytest.raises(ConfigError, match="workers_per_trial=0"):
        ScalingSpec(num_workers=0)
    with pytest.raises(ConfigError, match="gpus_per_worker=1.5"):
        ScalingSpec(gpus_per_worker=1.5)


def test_the_controller_poll_interval_reaches_train_through_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(POLL_INTERVAL_VARIABLE, raising=False)
    trainer = build_trainer(
        quick(1), TrainerSpec(storage_path=str(tmp_path), poll_interval_s=0.5), name="poll"
    )
    assert POLL_INTERVAL_VARIABLE not in os.environ, (
        "building a trainer leaves the environment as it was"
    )
    seen = {}
    monkeypatch.setattr(TorchTrainer, "fit", lambda self: seen.update(get_env_vars_to_propagate()))
    trainer.fit()
    assert seen[POLL_INTERVAL_VARIABLE] == "0.5", (
        "Train hands it on to the controller that fit() starts"
    )
    assert POLL_INTERVAL_VARIABLE not in os.environ, "and it is gone once fit() returns"
    with pytest.raises(ConfigError, match="poll_interval_s=0"):
        TrainerSpec(poll_interval_s=0)


@ray.remote(num_cpus=0)
def load_through(share, name, root, split):
    dataset = shared_loader(share)(name, root, split)
    images = getattr(dataset, "images", None)
    return type(dataset).__name__, None if images is None else (
        images.numpy().copy(),
        mapping_of(images.data_ptr()),
    )


def mapping_of(address: int) -> str:
    """The file backing the memory at ``address`` in this process ('' for private memory)."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        span, _, _, _, _, *path = line.split()
        low, high = (int(end, 16) for end in span.split("-"))
        if low <= address < high:
            return " ".join(path)
    return ""


def test_trials_share_one_stored_copy_of_each_in_memory_dataset(local_ray, tmp_path):
    share = DatasetShare.remote()
    first, second = ray.get([load_through.remote(share, "digits", None, "train") for _ in range(2)])
    assert ray.get(share.stats.remote()) == {"datasets": 1, "loads": 1}
    expected = get_dataset("digits", split="train").images.numpy()
    for kind, (images, mapping) in (first, second):
        assert kind == "TensorImageDataset" and (images == expected).all()
        assert "plasma" in mapping, "mapped from the node's object store, not a private copy"
    ray.get(load_through.remote(share, "digits", None, "test"))
    assert ray.get(share.stats.remote()) == {"datasets": 2, "loads": 2}

    folder = tmp_path / "coco" / "train2017"
    folder.mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(folder / "0001.jpg")
    kind, _ = ray.get(load_through.remote(share, "coco", str(tmp_path), "train"))
    assert kind == "UnlabelledImageFolder" and ray.get(share.stats.remote())["datasets"] == 2, (
        "files stay on disk"
    )
