"""The training function as a Ray Train V2 ``TorchTrainer``: DDP workers, per-epoch reports
with checkpoints, and resumption from ``ray.train.get_checkpoint()``.

Ray is imported here only; the science core stays importable without it.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray.train
import torch
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from trainables.config import TrainConfig
from trainables.train import CheckpointError, load_checkpoint, train
from trainables.validation import check_range

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
        return ScalingConfig(num_workers=self.num_workers, use_gpu=self.use_gpu, resources_per_worker=resources)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Runs on every Train worker: SimSiam from the config, reporting each epoch to Ray Train."""
    config = TrainConfig.from_dict(loop_config["config"])
    if torch.cuda.is_available() and config.device != "cpu":
        torch.cuda.set_device(ray.train.torch.get_device())
    is_chief = ray.train.get_context().get_world_rank() == 0

    def report(metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        checkpoint = Checkpoint.from_directory(checkpoint_dir) if is_chief and checkpoint_dir else None
        ray.train.report(metrics, checkpoint=checkpoint)

    with tempfile.TemporaryDirectory(prefix="simsiam-") as workdir:
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            train(config, report, workdir=workdir)
            return
        with checkpoint.as_directory() as latest:
            train(config, report, resume_from=readable_checkpoint(resume_candidates(checkpoint, Path(latest))), workdir=workdir)


CHECKPOINT_PREFIX = "checkpoint_"


def resume_candidates(checkpoint: Checkpoint, latest: Path) -> list[Path]:
    """Where to resume from, best first: the latest checkpoint, then (on local storage, where
    Train keeps ``checkpoints_to_keep`` of them side by side, named by time) the older ones."""
    if checkpoint.filesystem.type_name != "local":
        return [latest]
    here = Path(checkpoint.path)
    older = sorted((path for path in here.parent.glob(f"{CHECKPOINT_PREFIX}*") if path.is_dir() and path.name < here.name), reverse=True)
    return [latest, *older]


def readable_checkpoint(candidates: list[Path]) -> Path:
    """The first candidate that loads; each unreadable one is skipped with a warning naming it."""
    problems = []
    for candidate in candidates:
        try:
            load_checkpoint(candidate)
            return candidate
        except CheckpointError as error:
            logger.warning("skipping an unreadable checkpoint, resuming from an earlier one: %s", error)
            problems.append(str(error))
    raise CheckpointError("no readable checkpoint to resume from: " + "; ".join(problems))


@dataclass(frozen=True)
class TrainerSpec:
    """Everything that turns a TrainConfig into a TorchTrainer run."""

    scaling: ScalingSpec = field(default_factory=ScalingSpec)
    storage_path: str | None = None
    checkpoints_to_keep: int = 2
    max_failures: int = 1


def build_trainer(
    config: TrainConfig, spec: TrainerSpec, name: str, callbacks: Sequence[Any] = ()
) -> TorchTrainer:
    """A TorchTrainer for ``config``. Re-running with the same ``name`` and ``storage_path``
    restores the run and resumes its workers from the latest checkpoint."""
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": config.to_dict()},
        scaling_config=spec.scaling.scaling_config(),
        run_config=RunConfig(
            name=name,
            storage_path=spec.storage_path,
            checkpoint_config=CheckpointConfig(num_to_keep=spec.checkpoints_to_keep),
            failure_config=FailureConfig(max_failures=spec.max_failures),
            callbacks=list(callbacks),
        ),
    )
