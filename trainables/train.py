"""A Ray-free SimSiam training function: N epochs, a report after each, resumable.

``train(config, report)`` calls ``report(metrics, checkpoint_dir)`` after every epoch, where
``checkpoint_dir`` holds ``checkpoint.pt`` for that epoch. ``train(config, report,
resume_from=checkpoint_dir)`` continues after the epoch saved there. Data order is drawn from a
generator seeded by ``(seed, epoch)``, the same on every rank, in-memory views from one seeded by
``(seed, epoch, rank)``, and each folder image's views from one seeded by ``(seed, epoch, index)``,
so a resumed run sees exactly the batches the uninterrupted run would have seen, with any number
of loader workers. Under ``torch.distributed`` the model is wrapped in DDP (with SyncBatchNorm on
GPUs) and each rank trains on its shard of the epoch's one permutation (the shards are disjoint);
rank 0 evaluates and checkpoints.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from trainables.config import BANK_SPLIT, QUERY_SPLIT, TrainConfig
from trainables.data import DATASETS, get_dataset
from trainables.data.in_memory import TensorImageDataset
from trainables.health import STOP_REASON_KEY, stop_reason
from trainables.knn import knn_topk_accuracy
from trainables.loss import normalized_std, simsiam_loss_terms
from trainables.metrics import (  # noqa: F401 (CHECKPOINT_FILE, MARGIN_MEAN: re-exported)
    CHECKPOINT_FILE,
    EPOCH,
    FLOOR_ACTIVE,
    KNN_TOP1,
    KNN_TOP5,
    LOSS,
    LR,
    MARGIN_MEAN,
    SKIPPED_IMAGES,
    Z_STD,
)
from trainables.model import SimSiam
from trainables.pipeline import (
    TwoViewTransform,
    ViewBatch,
    evaluation_batches,
    normalize,
    view_batches,
)
from trainables.timeline import mark
from trainables.view_stats import EpochStats, ViewHistograms

Metrics = dict[str, float | str]
"""An epoch's numbers, and ``stop_reason`` (a string) on the last epoch of a run that stopped
itself."""
Reporter = Callable[[Metrics, Path], None]
DatasetLoader = Callable[[str, "str | Path | None", str], Dataset]
"""``(name, root, split) -> Dataset``, like :func:`~trainables.data.get_dataset`."""
METRICS_FILE = "metrics.json"
"""The metrics of a checkpoint's epoch, reported again when a run resumes with nothing left
to train."""
"""The mean over an epoch's pairs of the margin ``m`` of the loss floor ``-1 + m`` (0 without one),
so that arms of different margin modes are compared at a known margin size."""


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.cuda else nullcontext()

    @classmethod
    def detect(cls, device: str) -> Runtime:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device='cuda' was requested but no CUDA device is available")
        distributed = dist.is_available() and dist.is_initialized()
        rank = dist.get_rank() if distributed else 0
        world_size = dist.get_world_size() if distributed else 1
        if device == "cuda":
            index = torch.cuda.current_device()
            return cls(torch.device("cuda", index), rank, world_size)
        return cls(torch.device("cpu"), rank, world_size)


def scheduled_lr(
    peak_lr: float, epoch: int, epochs: int, *, schedule: str = "cosine", warmup_epochs: int = 0
) -> float:
    """The lr of ``epoch`` (from 0): a linear warm-up to ``peak_lr`` over ``warmup_epochs``, then
    SimSiam's per-epoch cosine decay (or a constant lr) over the remaining epochs."""
    if epoch < warmup_epochs:
        return peak_lr * (epoch + 1) / warmup_epochs
    if schedule == "constant":
        return peak_lr
    return (
        peak_lr * 0.5 * (1 + math.cos(math.pi * (epoch - warmup_epochs) / (epochs - warmup_epochs)))
    )


def build_optimizer(model: SimSiam, config: TrainConfig) -> torch.optim.SGD:
    groups = [
        {
            "params": [*model.backbone.parameters(), *model.projector.parameters()],
            "fixed_lr": False,
        },
        {"params": list(model.predictor.parameters()), "fixed_lr": config.optim.fix_predictor_lr},
    ]
    return torch.optim.SGD(
        groups, lr=config.lr, momentum=config.optim.momentum, weight_decay=config.optim.weight_decay
    )


def set_learning_rate(optimizer: torch.optim.Optimizer, config: TrainConfig, epoch: int) -> float:
    scheduled = scheduled_lr(
        config.lr,
        epoch,
        config.epochs,
        schedule=config.optim.schedule,
        warmup_epochs=config.optim.warmup_epochs,
    )
    for group in optimizer.param_groups:
        group["lr"] = config.lr if group["fixed_lr"] else scheduled
    return scheduled


def epoch_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_009 + rank)


def train_epoch(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[ViewBatch],
    config: TrainConfig,
    runtime: Runtime,
) -> tuple[Metrics, dict[str, torch.Tensor]]:
    """One epoch; returns its metrics and the histograms of the pairs it trained on."""
    net.train()
    stats = EpochStats()
    started = time.perf_counter()
    for batch in batches:
        view1 = normalize(batch.view1, runtime.device, channels_last=runtime.cuda)
        view2 = normalize(batch.view2, runtime.device, channels_last=runtime.cuda)
        margin = config.margin.margin(batch.geometry.phi.to(runtime.device, torch.float32))
        with runtime.autocast():
            output = net(view1, view2)
        terms = simsiam_loss_terms(
            output.p1.float(), output.p2.float(), output.z1.float(), output.z2.float(), margin
        )
        optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        optimizer.step()
        z_std = 0.5 * (normalized_std(output.z1) + normalized_std(output.z2))
        margin_mean = (
            torch.as_tensor(0.0 if margin is None else margin, device=runtime.device).float().mean()
        )
        stats.add_step(
            {
                LOSS: terms.loss.detach(),
                FLOOR_ACTIVE: terms.floor_active,
                Z_STD: z_std,
                MARGIN_MEAN: margin_mean,
            },
            batch.geometry,
        )
    return stats.metrics(time.perf_counter() - started), stats.histograms()


@torch.no_grad()
def encode_dataset(
    model: SimSiam, dataset, count: int, config: TrainConfig, runtime: Runtime
) -> tuple[torch.Tensor, torch.Tensor]:
    features, labels = [], []
    crop = DATASETS[config.data.eval_dataset].eval_crop
    for images, batch_labels in evaluation_batches(
        dataset, config.views.size, count, workers=config.loader_workers, crop=crop
    ):
        with runtime.autocast():
            encoded = model.encode(normalize(images, runtime.device, channels_last=runtime.cuda))
        features.append(encoded.float())
        labels.append(batch_labels.to(runtime.device))
    return torch.cat(features), torch.cat(labels)


class KnnEvaluator:
    """kNN top-1/top-5 of the backbone's features: bank from the eval dataset's train split,
    queries from its test split (always labelled splits)."""

    def __init__(
        self,
        config: TrainConfig,
        load: DatasetLoader = get_dataset,
        device: torch.device | None = None,
    ) -> None:
        data = config.data
        info = DATASETS[data.eval_dataset]
        self.num_classes = info.num_classes
        self.bank = resident(load(data.eval_dataset, data.root, BANK_SPLIT), device)
        self.queries = resident(load(data.eval_dataset, data.root, QUERY_SPLIT), device)
        self.config = config

    def count(self, dataset) -> int:
        """How many images of ``dataset`` are evaluated (``data.eval_limit`` caps it)."""
        limit = self.config.data.eval_limit
        return len(dataset) if limit is None else min(limit, len(dataset))

    def __call__(self, model: SimSiam, runtime: Runtime) -> Metrics:
        was_training = model.training
        model.eval()
        bank, bank_labels = encode_dataset(
            model, self.bank, self.count(self.bank), self.config, runtime
        )
        queries, query_labels = encode_dataset(
            model, self.queries, self.count(self.queries), self.config, runtime
        )
        model.train(was_training)
        accuracy = knn_topk_accuracy(
            queries,
            query_labels,
            bank,
            bank_labels,
            self.num_classes,
            k=self.config.knn.k,
            temperature=self.config.knn.temperature,
            topk=(1, 5),
        )
        return {KNN_TOP1: accuracy[1], KNN_TOP5: accuracy[5]}


def resident(dataset: Dataset, device: torch.device | None) -> Dataset:
    """An in-memory dataset as one uint8 tensor on ``device`` (views are then cut and coloured
    there, batch by batch); any other dataset as it is."""
    if device is None or not isinstance(dataset, TensorImageDataset):
        return dataset
    return dataset.to(device)


def save_checkpoint(
    directory: Path,
    model: SimSiam,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    config: TrainConfig,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "config": config.to_dict(),
    }
    partial = directory / (CHECKPOINT_FILE + ".partial")
    torch.save(state, partial)
    partial.replace(directory / CHECKPOINT_FILE)
    return directory


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read back (missing, truncated or corrupt)."""


def load_checkpoint(directory: Path | str, map_location: torch.device | str = "cpu") -> dict:
    """The state saved by :func:`save_checkpoint`, loaded with ``weights_only=True`` (no pickled
    code runs); raises :class:`CheckpointError` naming the file when it cannot be read."""
    path = Path(directory) / CHECKPOINT_FILE
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as error:
        raise CheckpointError(f"no checkpoint at {path}") from error
    except Exception as error:
        # torch raises RuntimeError, EOFError, UnpicklingError, ... on bad bytes
        size = path.stat().st_size
        raise CheckpointError(
            f"checkpoint {path} ({size} bytes) is truncated or corrupt: "
            f"{type(error).__name__}: {error}"
        ) from error
    missing = (
        {"model", "optimizer", "epoch"} - set(state) if isinstance(state, dict) else {"a dict"}
    )
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {sorted(missing)}")
    return state


def agreed(reason: str | None, runtime: Runtime) -> str | None:
    """Rank 0's stop decision on every rank, so that DDP ranks stop together."""
    if runtime.world_size == 1:
        return reason
    decision = [reason]
    dist.broadcast_object_list(decision, src=0)
    return decision[0]


def _shard(indices: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    usable = len(indices) - len(indices) % runtime.world_size
    return indices[runtime.rank : usable : runtime.world_size]


def train(
    config: TrainConfig,
    report: Reporter | None = None,
    *,
    resume_from: Path | str | None = None,
    workdir: Path | str | None = None,
    load_dataset: DatasetLoader = get_dataset,
    labels: Mapping[str, str] | None = None,
) -> list[Metrics]:
    """Train SimSiam per ``config``; returns the metrics of every epoch run by this call.

    ``load_dataset(name, root, split)`` loads each dataset (a sweep passes one that shares them
    between the trials of a node). In-memory datasets are moved to the training device once.
    ``labels`` are facts about this run recorded with every epoch it trains, checkpoint included
    (a sweep passes the Ray nodes it runs on), so that an epoch reported again from its checkpoint
    keeps the labels of the run that trained it.
    """
    runtime = Runtime.detect(config.device)
    torch.manual_seed(config.seed)
    model = SimSiam(config.model).to(runtime.device)
    if runtime.cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config)
    mark("model.built")
    first_epoch = 0
    if resume_from is not None:
        state = load_checkpoint(resume_from, runtime.device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        first_epoch = state["epoch"]
        mark("checkpoint.restored", epoch=first_epoch, checkpoint=str(resume_from))
    net: nn.Module = model
    if runtime.world_size > 1:
        if runtime.cuda:  # SyncBatchNorm runs on GPUs only; CPU workers keep per-worker statistics
            net = nn.parallel.DistributedDataParallel(
                nn.SyncBatchNorm.convert_sync_batchnorm(model), device_ids=[runtime.device.index]
            )
        else:
            net = nn.parallel.DistributedDataParallel(model)

    dataset = resident(
        load_dataset(config.data.dataset, config.data.root, config.data.train_split), runtime.device
    )
    count = len(dataset) if config.data.limit is None else min(config.data.limit, len(dataset))
    transform = TwoViewTransform(config.views.build(), config.photometric)
    evaluate = KnnEvaluator(config, load_dataset, runtime.device) if runtime.is_chief else None
    batch_size = max(1, config.batch_size // runtime.world_size)
    workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="simsiam-"))
    mark("data.ready")

    history: list[Metrics] = []
    realised = ViewHistograms.load(resume_from)
    if (
        resume_from is not None
        and report is not None
        and (Path(resume_from) / METRICS_FILE).is_file()
    ):
        # Report the checkpoint's epoch again: its first report may have been lost with a driver or
        # node that died after the checkpoint was written (consumers keep each epoch once). A
        # finished run restarted (a sweep resumed from an older state) reports its end this way.
        finished = first_epoch >= config.epochs
        report(
            json.loads((Path(resume_from) / METRICS_FILE).read_text()),
            Path(resume_from) if finished else None,
        )
    previous: Path | None = None
    for epoch in range(first_epoch, config.epochs):
        mark("epoch.start", epoch=epoch + 1)
        lr = set_learning_rate(optimizer, config, epoch)
        generator = epoch_generator(config.seed, epoch, runtime.rank)
        # Every rank shards rank 0's permutation, so that the shards are disjoint and cover the
        # epoch; each rank's views come from its own generator.
        permutation = generator if runtime.is_chief else epoch_generator(config.seed, epoch, 0)
        order = _shard(torch.randperm(count, generator=permutation), runtime)
        batches = view_batches(
            dataset,
            order,
            transform,
            batch_size,
            generator,
            config.loader_workers,
            seed=config.seed,
            epoch=epoch,
        )
        metrics, epoch_counts = train_epoch(net, optimizer, batches, config, runtime)
        mark("epoch.trained", epoch=epoch + 1)
        realised.add_epoch(epoch_counts)
        metrics.update(
            {EPOCH: epoch + 1, LR: lr, SKIPPED_IMAGES: float(len(getattr(dataset, "skipped", ())))},
            **(labels or {}),
        )
        reason = agreed(
            stop_reason([*history, metrics], config.model.projector_dim, config.health), runtime
        )
        if reason is not None:
            metrics[STOP_REASON_KEY] = reason
        if evaluate is not None and not math.isfinite(metrics[LOSS]):
            metrics.update(knn_top1=float("nan"), knn_top5=float("nan"))
        elif evaluate is not None and (
            reason is not None or (epoch + 1) % config.knn.every == 0 or epoch + 1 == config.epochs
        ):
            metrics.update(evaluate(model, runtime))
        mark("epoch.evaluated", epoch=epoch + 1)
        checkpoint = None
        if runtime.is_chief:
            checkpoint = save_checkpoint(
                workdir / f"epoch_{epoch + 1:04d}", model, optimizer, epoch + 1, config
            )
            realised.save(checkpoint)
            (checkpoint / METRICS_FILE).write_text(json.dumps(metrics))
        mark("epoch.saved", epoch=epoch + 1)
        if report is not None:
            report(metrics, checkpoint)
        mark("epoch.reported", epoch=epoch + 1)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
        previous = checkpoint
        history.append(metrics)
        if reason is not None:
            break
    return history
