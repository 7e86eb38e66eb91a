"""The two baselines every kNN score is measured against, on the same evaluation set.

* ``untrained``: the kNN accuracy of the encoder :func:`~trainables.train.train` starts from
  (``SimSiam(config.model)`` built after ``torch.manual_seed(config.seed)``), so one per seed;
* ``pixels``: the kNN accuracy of the raw pixels, i.e. the evaluation views
  (:func:`~trainables.pipeline.evaluation_view` at ``views.size``) normalised exactly like the
  encoder's input (:func:`~trainables.pipeline.normalize`) and flattened.

Both use the evaluator of the trained models (:class:`~trainables.train.KnnEvaluator`): bank =
the eval dataset's train split, queries = its test split, ``data.eval_limit`` images of each,
``knn.k`` neighbours at ``knn.temperature``. A learned encoder is worth something only above both.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from trainables.config import TrainConfig
from trainables.data import get_dataset
from trainables.model import SimSiam
from trainables.train import DatasetLoader, KnnEvaluator, Metrics, Runtime

logger = logging.getLogger(__name__)

UNTRAINED, PIXELS = "untrained", "pixels"
BASELINES = (UNTRAINED, PIXELS)
BASELINE_LABELS = {UNTRAINED: "untrained encoder", PIXELS: "raw pixels"}
PIXEL_BANK_LIMIT_BYTES = 4 * 1024**3
"""Raw pixels of bank and queries held at once (float32); beyond it the pixel baseline
is skipped."""


class PixelBankTooLarge(ValueError):
    """The raw pixels of the evaluation set do not fit :data:`PIXEL_BANK_LIMIT_BYTES`."""


class RawPixels(nn.Module):
    """An "encoder" whose features are its normalised input pixels, flattened."""

    def encode(self, images: Tensor) -> Tensor:
        return images.flatten(1)


def untrained_knn(
    config: TrainConfig,
    load_dataset: DatasetLoader = get_dataset,
    evaluate: KnnEvaluator | None = None,
) -> Metrics:
    """kNN top-1/top-5 of the encoder that :func:`~trainables.train.train` starts from with
    ``config.seed``: the baseline to beat. ``evaluate`` (built from ``config`` when not given)
    lets several seeds share one loaded evaluation set. The global RNG is left as it was."""
    runtime = Runtime.detect(config.device)
    if evaluate is None:
        evaluate = KnnEvaluator(config, load_dataset, runtime.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = SimSiam(config.model)
    return evaluate(model.to(runtime.device), runtime)


def pixel_knn(
    config: TrainConfig,
    load_dataset: DatasetLoader = get_dataset,
    evaluate: KnnEvaluator | None = None,
) -> Metrics:
    """kNN top-1/top-5 of the raw evaluation pixels. Raises :class:`PixelBankTooLarge` before
    cutting any view when bank and queries would take more than :data:`PIXEL_BANK_LIMIT_BYTES`."""
    runtime = Runtime.detect(config.device)
    if evaluate is None:
        evaluate = KnnEvaluator(config, load_dataset, runtime.device)
    images = evaluate.count(evaluate.bank) + evaluate.count(evaluate.queries)
    size = config.views.size
    needed = images * 3 * size * size * 4
    if needed > PIXEL_BANK_LIMIT_BYTES:
        raise PixelBankTooLarge(
            f"raw-pixel kNN on {images} images of {config.data.eval_dataset} at {size} px needs "
            f"{needed / 1024**3:.1f} GiB (at most {PIXEL_BANK_LIMIT_BYTES / 1024**3:.0f} GiB): "
            "set data.eval_limit to cap the images"
        )
    return evaluate(RawPixels(), runtime)


@dataclass(frozen=True)
class BaselineScore:
    """One baseline's score; ``seed`` is None for ``pixels`` (no weights, no seed) and
    ``knn_top5`` None where only top-1 was recorded (MLflow)."""

    baseline: str
    seed: int | None
    knn_top1: float
    knn_top5: float | None
    eval_dataset: str
    k: int
    size: int
    eval_limit: int | None

    @classmethod
    def of(
        cls, baseline: str, seed: int | None, metrics: Metrics, config: TrainConfig
    ) -> BaselineScore:
        return cls(
            baseline,
            seed,
            float(metrics["knn_top1"]),
            float(metrics["knn_top5"]),
            config.data.eval_dataset,
            config.knn.k,
            config.views.size,
            config.data.eval_limit,
        )

    @property
    def setting(self) -> tuple[str, int, int, int | None]:
        """What the score was measured on: eval dataset, view size, k, eval limit."""
        return self.eval_dataset, self.size, self.k, self.eval_limit


COLUMNS = tuple(field.name for field in fields(BaselineScore))
"""The columns of a sweep's baselines table, one row per :class:`BaselineScore`."""


@dataclass(frozen=True)
class Baselines:
    """A sweep's baseline scores (none for a sweep run before baselines were recorded)."""

    scores: tuple[BaselineScore, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.scores)

    @property
    def untrained(self) -> dict[int, float]:
        """seed -> the untrained encoder's kNN top-1, by seed."""
        return {
            score.seed: score.knn_top1
            for score in sorted(self.of_kind(UNTRAINED), key=lambda s: s.seed)
        }

    @property
    def untrained_mean(self) -> float | None:
        values = [score.knn_top1 for score in self.of_kind(UNTRAINED)]
        return sum(values) / len(values) if values else None

    @property
    def pixels(self) -> float | None:
        values = [score.knn_top1 for score in self.of_kind(PIXELS)]
        return sum(values) / len(values) if values else None

    def of_kind(self, baseline: str) -> list[BaselineScore]:
        return [score for score in self.scores if score.baseline == baseline]

    def by_setting(self) -> dict[tuple, Baselines]:
        """The scores of each evaluation setting (sweeps drawn together may differ)."""
        groups: dict[tuple, list[BaselineScore]] = {}
        for score in self.scores:
            groups.setdefault(score.setting, []).append(score)
        return {setting: Baselines(tuple(group)) for setting, group in groups.items()}

    def rows(self) -> list[dict[str, Any]]:
        return [asdict(score) for score in self.scores]

    @classmethod
    def from_rows(cls, rows: Iterable[dict[str, Any]]) -> Baselines:
        return cls(
            tuple(BaselineScore(**{name: row.get(name) for name in COLUMNS}) for row in rows)
        )

    @classmethod
    def combine(cls, many: Iterable[Baselines]) -> Baselines:
        """Every distinct score of ``many`` (the same score recorded twice counts once)."""
        return cls(tuple(dict.fromkeys(score for each in many for score in each.scores)))


def sweep_baselines(
    config: TrainConfig, seeds: Sequence[int], load_dataset: DatasetLoader = get_dataset
) -> Baselines:
    """The untrained encoder of each of ``seeds`` and the raw pixels once, on ``config``'s eval
    set (loaded once for all of them). A pixel bank too large to hold is left out, with a
    warning."""
    evaluate = KnnEvaluator(config, load_dataset, Runtime.detect(config.device).device)
    scores = [
        BaselineScore.of(
            UNTRAINED, seed, untrained_knn(config.replace(seed=seed), evaluate=evaluate), config
        )
        for seed in sorted(set(seeds))
    ]
    try:
        scores.append(BaselineScore.of(PIXELS, None, pixel_knn(config, evaluate=evaluate), config))
    except PixelBankTooLarge as error:
        logger.warning("no raw-pixel baseline: %s", error)
    return Baselines(tuple(scores))


def describe(baselines: Baselines, best: float | None = None, seed: int | None = None) -> str:
    """``untrained encoder 0.412 (seeds 0,1,2: 0.405/0.411/0.420), raw pixels 0.378; best 0.561 =
    untrained +0.150 (seed 1; mean +0.149), pixels +0.183``: the margins use the untrained encoder
    of the best trial's own ``seed`` and the mean over seeds."""
    parts = []
    untrained, mean, pixels = baselines.untrained, baselines.untrained_mean, baselines.pixels
    if untrained:
        seeds = ",".join(str(each) for each in untrained)
        values = "/".join(f"{value:.3f}" for value in untrained.values())
        parts.append(
            f"{BASELINE_LABELS[UNTRAINED]} {mean:.3f} "
            f"({'seeds' if len(untrained) > 1 else 'seed'} {seeds}: {values})"
        )
    if pixels is not None:
        parts.append(f"{BASELINE_LABELS[PIXELS]} {pixels:.3f}")
    if not parts:
        return "no baselines recorded"
    text = ", ".join(parts)
    if best is None:
        return text
    margins = []
    if untrained:
        own = untrained.get(seed)
        margins.append(
            f"untrained {best - own:+.3f} (seed {seed}; mean {best - mean:+.3f})"
            if own is not None
            else f"untrained {best - mean:+.3f} (mean)"
        )
    if pixels is not None:
        margins.append(f"pixels {best - pixels:+.3f}")
    return f"{text}; best {best:.3f} = {', '.join(margins)}"
