"""The training function as a Ray Train V2 ``TorchTrainer``: DDP workers, per-epoch reports
with checkpoints, and resumption from ``ray.train.get_checkpoint()``.

Ray is imported here only; the science core stays importable without it. This module is what
Train's controller unpickles to find ``train_loop_per_worker``, so it imports the science core
(torchvision and all) inside the functions that run on the workers, not at import time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray.train
import torch
from ray.train import (
    Checkpoint,
    CheckpointConfig,
    FailureConfig,
    LoggingConfig,
    Result,
    RunConfig,
    ScalingConfig,
)
from ray.train.torch import TorchTrainer

from trainables.timeline import mark
from trainables.validation import check_choice, check_range

if TYPE_CHECKING:
    from trainables.config import TrainConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScalingSpec:
    """How one trial is spread: DDP workers, and each worker's CPUs and (fractional) GPUs.

    ``gpus_per_worker=0.25`` packs four workers (four small CIFAR trials, say) on one GPU.
    """

    num_workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    memory_per_worker: int | None = None

    def __post_init__(self) -> None:
        check_range("workers_per_trial", self.num_workers, 1, integer=True)
        check_range("cpus_per_worker", self.cpus_per_worker, 0)
        check_range("gpus_per_worker", self.gpus_per_worker, 0)
        if self.gpus_per_worker > 1 and self.gpus_per_worker != int(self.gpus_per_worker):
            check_range("gpus_per_worker", self.gpus_per_worker, 0, 1)

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0

    def scaling_config(self) -> ScalingConfig:
        resources: dict[str, Any] = {"CPU": self.cpus_per_worker}
        if self.use_gpu:
            resources["GPU"] = self.gpus_per_worker
        if self.memory_per_worker:
            resources["memory"] = self.memory_per_worker
        return ScalingConfig(
            num_workers=self.num_workers, use_gpu=self.use_gpu, resources_per_worker=resources
        )


def report_log_level(level: str) -> None:
    """Train V2 logs each report ("Reporting training result ...") under its module's file path
    rather than ``ray.train.*``, which ``LoggingConfig``'s level does not reach: set it here."""
    from ray.train.v2._internal.execution import context

    logging.getLogger(context.__file__).setLevel(level)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Runs on every Train worker: SimSiam from the config, reporting each epoch to Ray Train."""
    mark("worker.enter")
    from trainables.config import TrainConfig
    from trainables.data import get_dataset
    from trainables.train import train

    config = TrainConfig.from_dict(loop_config["config"])
    report_log_level(loop_config.get("log_level", "INFO"))
    share = loop_config.get("datasets")
    load_dataset = shared_loader(share) if share is not None else get_dataset
    if torch.cuda.is_available() and config.device != "cpu":
        torch.cuda.set_device(ray.train.torch.get_device())
    is_chief = ray.train.get_context().get_world_rank() == 0

    def report(metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        checkpoint = (
            Checkpoint.from_directory(checkpoint_dir) if is_chief and checkpoint_dir else None
        )
        ray.train.report(metrics, checkpoint=checkpoint)

    labels = {NODES_KEY: ",".join(worker_nodes())}
    with tempfile.TemporaryDirectory(prefix="simsiam-") as workdir:
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            train(config, report, workdir=workdir, load_dataset=load_dataset, labels=labels)
            return
        with checkpoint.as_directory() as latest:
            resume_from = readable_checkpoint(resume_candidates(checkpoint, Path(latest)))
            train(
                config,
                report,
                resume_from=resume_from,
                workdir=workdir,
                load_dataset=load_dataset,
                labels=labels,
            )


NODES_KEY = "nodes"
"""Recorded with every epoch: the Ray node IDs of the workers that trained it, rank order,
comma-joined."""


def worker_nodes() -> list[str]:
    """The node ID of every worker of this Train run, by rank (one all-gather at start-up)."""
    here = ray.get_runtime_context().get_node_id()
    if ray.train.get_context().get_world_size() == 1 or not torch.distributed.is_initialized():
        return [here]
    nodes: list[str | None] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(nodes, here)
    return [str(node) for node in nodes]


@ray.remote(num_cpus=0)
class DatasetShare:
    """The in-memory datasets a sweep has loaded, as objects in Ray's object store, by
    ``(name, root, split)``. The first trial to need one loads it and hands it to this actor, which
    puts it in the store (owning it, so that it outlives that trial); every later trial maps the
    copy its node already holds (Ray fetches an object to a node once, and its processes share that
    copy), instead of parsing the files again. The actor, and with it the objects, ends with the
    sweep's driver."""

    def __init__(self) -> None:
        self.refs: dict[str, ray.ObjectRef] = {}
        self.loads = 0

    def find(self, key: str) -> list[ray.ObjectRef]:
        return [self.refs[key]] if key in self.refs else []  # in a list, so Ray hands back the ref

    def add(self, key: str, dataset: tuple) -> list[ray.ObjectRef]:
        if key not in self.refs:
            self.refs[key] = ray.put(dataset)
            self.loads += 1
        return [self.refs[key]]

    def stats(self) -> dict[str, int]:
        return {"datasets": len(self.refs), "loads": self.loads}


def shared_loader(share: ray.actor.ActorHandle):
    """A ``load_dataset(name, root, split)`` for :func:`trainables.train.train` that goes through
    the sweep's :class:`DatasetShare`; image-folder datasets (files read lazily) load as usual."""
    from trainables.data import get_dataset
    from trainables.data.in_memory import TensorImageDataset

    def load(name: str, root: str | Path | None, split: str):
        key = f"{name}|{split}|{root}"
        try:
            found = ray.get(share.find.remote(key))
            if not found:
                dataset = get_dataset(name, root, split)
                if not isinstance(dataset, TensorImageDataset):
                    return dataset
                found = ray.get(
                    share.add.remote(
                        key, (dataset.images.numpy(), dataset.labels.numpy(), dataset.classes)
                    )
                )
            images, labels, classes = ray.get(found[0])
        except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError):
            # the share or its copy is gone (a resumed sweep's old handle, a lost node): load here
            logger.warning(
                "the sweep's dataset share is unavailable; loading %s (%s) in this trial",
                name,
                split,
            )
            return get_dataset(name, root, split)
        # the store's arrays are read-only; the training code never writes them
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return TensorImageDataset(
                torch.from_numpy(images), torch.from_numpy(labels), tuple(classes)
            )

    return load


CHECKPOINT_PREFIX = "checkpoint_"
POLL_INTERVAL_VARIABLE = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"


@contextlib.contextmanager
def environment_variable(name: str, value: str) -> Iterator[None]:
    """``name=value`` in this process's environment for the duration of the block; then the
    previous value is put back, or the variable removed if it was not set."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def resume_candidates(checkpoint: Checkpoint, latest: Path) -> list[Path]:
    """Where to resume from, best first: the latest checkpoint, then (on local storage, where
    Train keeps ``checkpoints_to_keep`` of them side by side, named by time) the older ones."""
    if checkpoint.filesystem.type_name != "local":
        return [latest]
    here = Path(checkpoint.path)
    older = sorted(
        (
            path
            for path in here.parent.glob(f"{CHECKPOINT_PREFIX}*")
            if path.is_dir() and path.name < here.name
        ),
        reverse=True,
    )
    return [latest, *older]


def readable_checkpoint(candidates: list[Path]) -> Path:
    """The first candidate that loads; each unreadable one is skipped with a warning naming it."""
    from trainables.train import CheckpointError, load_checkpoint

    problems = []
    for candidate in candidates:
        try:
            load_checkpoint(candidate)
            return candidate
        except CheckpointError as error:
            logger.warning(
                "skipping an unreadable checkpoint, resuming from an earlier one: %s", error
            )
            problems.append(str(error))
    raise CheckpointError("no readable checkpoint to resume from: " + "; ".join(problems))


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class TrainerSpec:
    """Everything that turns a TrainConfig into a TorchTrainer run."""

    scaling: ScalingSpec = field(default_factory=ScalingSpec)
    storage_path: str | None = None
    checkpoints_to_keep: int = 2
    max_failures: int = 1
    poll_interval_s: float = 0.2
    """How often Train's controller polls its workers for reports and health (Ray's default is
    2 s: each start-up step and each report waits up to that long)."""
    datasets: Any = None
    """A :class:`DatasetShare` handle: the sweep's trials load each dataset once per node."""
    log_level: str = "INFO"
    """Ray Train's console level (its log files in the Ray session keep every level)."""

    def __post_init__(self) -> None:
        check_range("poll_interval_s", self.poll_interval_s, 0.01, 60)
        check_choice("log_level", self.log_level, LOG_LEVELS)


class PolledTorchTrainer(TorchTrainer):
    """A TorchTrainer whose controller polls its workers every ``poll_interval_s``."""

    def __init__(self, *args: Any, poll_interval_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.poll_interval_s = poll_interval_s

    def fit(self) -> Result:
        # Train V2 reads the poll interval from the environment of the process that calls fit()
        # and passes it on to the controller it starts; it is set for this call only.
        with environment_variable(POLL_INTERVAL_VARIABLE, str(self.poll_interval_s)):
            return super().fit()


def build_trainer(
    config: TrainConfig, spec: TrainerSpec, name: str, callbacks: Sequence[Any] = ()
) -> TorchTrainer:
    """A TorchTrainer for ``config``, polled every ``spec.poll_interval_s``. Re-running with the
    same ``name`` and ``storage_path`` restores the run and resumes its workers from the latest
    checkpoint."""
    return PolledTorchTrainer(
        train_loop_per_worker,
        poll_interval_s=spec.poll_interval_s,
        train_loop_config={
            "config": config.to_dict(),
            "datasets": spec.datasets,
            "log_level": spec.log_level,
        },
        scaling_config=spec.scaling.scaling_config(),
        run_config=RunConfig(
            name=name,
            storage_path=spec.storage_path,
            checkpoint_config=CheckpointConfig(num_to_keep=spec.checkpoints_to_keep),
            failure_config=FailureConfig(max_failures=spec.max_failures),
            callbacks=list(callbacks),
            logging_config=LoggingConfig(log_level=spec.log_level),
        ),
    )
