"""The study configuration, validated once before Ray starts, and the plan it resolves to."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna

from search_spaces import SEARCH_SPACES, get_preset, with_seeds
from search_spaces.common import WithConstants
from search_spaces.grids import grid_define, select_points
from search_spaces.presets import GRID, SEARCH
from study.vocabulary import DEFAULT_STORAGE, SCORE
from trainables.config import TrainConfig
from trainables.data import DATASETS
from trainables.recipes import RECIPES, recipe
from trainables.validation import ConfigError, check_choice, check_range

METRIC = SCORE
MODE = "max"
DEFAULT_RECIPE = {
    "patterns": "patterns-quick",
    "pattern-scenes": "patterns-quick",
    "digits": "digits",
    "digit-scenes": "digits",
    "cifar10": "cifar",
    "cifar100": "cifar",
    "stl10": "cifar",
    "imagenet100": "imagenet",
    "coco": "cifar",
}
IF_EXISTS = ("refuse", "resume", "overwrite")  # what `study run` does when the sweep name is taken
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class StudyConfig:
    """A sweep: what to search (a ``space`` or a ``preset``), on what, and on which resources.

    ``overrides`` are dotted TrainConfig paths applied to the base config of every trial.
    ``grid=True`` runs a space's paper grid (x ``seeds``) instead of a TPE search; ``grid_only``
    keeps the grid points whose value at each dotted key is one of the listed values, e.g.
    ``{"views.params.overlap": [0.2, 0.6]}``. ``gpus_per_trial=None`` packs trials on the
    cluster's GPUs by :func:`default_gpus_per_trial` (none on a cluster without GPUs).
    ``if_exists`` says what to do when a sweep of that name exists: refuse (the default),
    ``resume`` it, or ``overwrite`` it (the old sweep's directory is moved aside under
    ``<storage>/.replaced/``, its MLflow runs stay).
    ``early_stopping`` turns ASHA (``grace_period``, ``reduction_factor``) on or off; unset, a
    search stops poor trials early and a grid runs every point and seed to the last epoch.
    """

    space: str | None = None
    preset: str | None = None
    grid: bool = False
    grid_only: dict[str, Any] = field(default_factory=dict)
    """dotted key -> the grid values to keep (a list, or one value), as given"""
    dataset: str | None = None
    eval_dataset: str | None = None
    recipe: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    num_samples: int | None = None
    epochs: int | None = None
    seeds: tuple[int, ...] = (0,)
    seed: int = 0
    name: str | None = None
    storage: str = DEFAULT_STORAGE
    if_exists: str = "refuse"
    tracking_uri: str = "sqlite:///mlflow.db"
    address: str | None = None
    workers_per_trial: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_trial: float | None = None
    max_concurrent_trials: int | None = None
    grace_period: int = 1
    reduction_factor: int = 2
    early_stopping: bool | None = None
    max_failures: int = 1
    checkpoints_to_keep: int = 2
    verbose: bool = False
    """The console: Tune's and Ray Train's own output (True), or the study's concise one
    (:mod:`study.console`)."""

    def __post_init__(self) -> None:
        if (self.space is None) == (self.preset is None):
            raise ConfigError(
                "space/preset", (self.space, self.preset), "exactly one of --space or --preset"
            )
        if self.space is not None:
            check_choice("space", self.space, SEARCH_SPACES)
        if self.preset is not None:
            get_preset(self.preset)
        for name in ("dataset", "eval_dataset"):
            if getattr(self, name) is not None:
                check_choice(name, getattr(self, name), DATASETS)
        if self.recipe is not None:
            check_choice("recipe", self.recipe, RECIPES)
        if self.num_samples is not None:
            check_range("num_samples", self.num_samples, 1, integer=True)
        if self.epochs is not None:
            check_range("epochs", self.epochs, 1, integer=True)
        if not isinstance(self.grid_only, dict):
            raise ConfigError(
                "grid_only", self.grid_only, "a mapping of dotted keys to lists of grid values"
            )
        object.__setattr__(self, "grid_only", dict(self.grid_only))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if not self.seeds:
            raise ConfigError("seeds", self.seeds, "at least one seed")
        for value in self.seeds:
            check_range("seeds", value, 0, integer=True)
        check_range("seed", self.seed, 0, integer=True)
        check_choice("if_exists", self.if_exists, IF_EXISTS)
        if self.name is not None and not NAME_PATTERN.match(self.name):
            raise ConfigError(
                "name",
                self.name,
                "1-100 letters, digits, '_', '.' or '-', starting with a letter or digit",
            )
        check_range("workers_per_trial", self.workers_per_trial, 1, integer=True)
        check_range("cpus_per_worker", self.cpus_per_worker, 0)
        if self.gpus_per_trial is not None:
            check_range("gpus_per_trial", self.gpus_per_trial, 0)
        if self.max_concurrent_trials is not None:
            check_range("max_concurrent_trials", self.max_concurrent_trials, 1, integer=True)
        check_range("grace_period", self.grace_period, 1, integer=True)
        check_range("reduction_factor", self.reduction_factor, 2, integer=True)
        if self.early_stopping is not None and not isinstance(self.early_stopping, bool):
            raise ConfigError(
                "early_stopping",
                self.early_stopping,
                "true (ASHA), false (every trial to the last epoch) or unset "
                "(a search stops early, a grid does not)",
            )
        check_range("max_failures", self.max_failures, 0, integer=True)
        check_range("checkpoints_to_keep", self.checkpoints_to_keep, 1, integer=True)
        if not self.tracking_uri:
            raise ConfigError("tracking_uri", self.tracking_uri, "an MLflow tracking URI")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["seeds"] = list(self.seeds)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyConfig:
        from trainables.config import build

        return build(cls, data, prefix="")


@dataclass(frozen=True)
class Asha:
    """ASHA's settings for a sweep of ``max_t`` epochs (used when early stopping is on; a grid
    reports the rungs they would have). Its rungs, where it compares trials and stops the
    worst, are at ``grace_period * reduction_factor**i`` epochs below ``max_t``."""

    grace_period: int
    reduction_factor: int
    max_t: int

    @property
    def rungs(self) -> tuple[int, ...]:
        return rung_epochs(self.grace_period, self.reduction_factor, self.max_t)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rungs": list(self.rungs)}


def rung_epochs(grace_period: int, reduction_factor: int, max_t: int) -> tuple[int, ...]:
    """The epochs below ``max_t`` at which ASHA compares trials."""
    rungs, epoch = [], grace_period
    while epoch < max_t:
        rungs.append(epoch)
        epoch *= reduction_factor
    return tuple(rungs)


def early_stopping_of(config: StudyConfig, mode: str) -> bool:
    """ASHA for a search unless ``early_stopping=False``; none for a grid unless
    ``early_stopping=True``."""
    return config.early_stopping if config.early_stopping is not None else mode == SEARCH


@dataclass(frozen=True)
class StudyPlan:
    """What a StudyConfig resolves to: a name, the base config, the space, the trial count, the
    ASHA settings and whether ASHA stops trials early (else every trial runs to the last epoch)."""

    name: str
    base_config: TrainConfig
    define: Callable[[optuna.Trial], dict[str, Any]]
    points: list[dict[str, Any]]
    num_samples: int
    description: str
    asha: Asha
    early_stopping: bool

    @property
    def epochs(self) -> int:
        return self.base_config.epochs

    @property
    def mode(self) -> str:
        return GRID if self.points else SEARCH


def _data_overrides(config: StudyConfig) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if config.dataset is not None:
        overrides["data.dataset"] = config.dataset
    if config.eval_dataset is not None:
        overrides["data.eval_dataset"] = config.eval_dataset
    if config.epochs is not None:
        overrides["epochs"] = config.epochs
    return {**overrides, **config.overrides}


def default_name(label: str, dataset: str) -> str:
    return f"{label}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"


def plan(config: StudyConfig) -> StudyPlan:
    """Resolve and validate everything a sweep needs; raises ConfigError before any cluster work."""
    extra = _data_overrides(config)
    if config.preset is not None:
        preset = get_preset(config.preset)
        recipe_name = config.recipe or preset.recipe
        base = recipe(recipe_name, **{"epochs": preset.epochs, **preset.overrides, **extra})
        points = select_points(preset.points(base), config.grid_only)
        define = grid_define(points) if points else preset.define(base)
        samples = len(points) or config.num_samples or preset.num_trials
        label, description = preset.name, preset.description
    else:
        dataset = config.dataset or "digits"
        recipe_name = config.recipe or DEFAULT_RECIPE[dataset]
        base = recipe(recipe_name, **extra)
        space = SEARCH_SPACES[config.space]
        if config.grid:
            points = select_points(with_seeds(space.grid(base), config.seeds), config.grid_only)
            define = grid_define(points)
        else:
            points = select_points([], config.grid_only)
            define = WithConstants(space.define(base.views.size), {"seed": config.seeds[0]})
        samples = len(points) or config.num_samples or 16
        label, description = config.space, space.description
    for point in points:
        base.replace(**point)
    name = config.name or default_name(label, base.data.dataset)
    asha = Asha(min(config.grace_period, base.epochs), config.reduction_factor, base.epochs)
    check_scored_every_epoch(base)
    early_stopping = early_stopping_of(config, GRID if points else SEARCH)
    return StudyPlan(name, base, define, points, samples, description, asha, early_stopping)


def check_scored_every_epoch(base: TrainConfig) -> None:
    """A sweep's trials report kNN every epoch: Tune refuses a report without its metric, and ASHA
    judges each trial at its rung epochs. ``knn.every`` is for single runs (``study train``)."""
    if base.knn.every != 1:
        raise ConfigError(
            "knn.every",
            base.knn.every,
            f"1 in a sweep (Tune and ASHA read {METRIC} from every epoch's report; "
            "kNN every N epochs is for `study train`)",
        )


GPU_SHARES: dict[str, tuple[tuple[int, float], ...]] = {
    # backbone -> (largest view size in px, GPUs per DDP worker), smallest size first. A SimSiam
    # step at CIFAR size keeps a modern GPU busy for well under a quarter of its time or memory,
    # so small-image trials share a GPU; 224 px ResNets take a GPU each.
    "small": ((64, 0.125), (96, 0.25)),
    "resnet18-cifar": ((32, 0.25), (96, 0.5)),
    "resnet18": ((32, 0.25), (96, 0.5)),
    "resnet50": ((32, 0.5),),
}


def default_gpus_per_trial(base: TrainConfig, workers_per_trial: int, cluster_gpus: float) -> float:
    """GPUs per trial when the user gives none: 0 without GPUs or with ``device=cpu``; else the
    backbone's share at the trial's view size (a whole GPU per worker beyond the table), times
    the trial's workers."""
    if cluster_gpus <= 0 or base.device == "cpu":
        return 0.0
    shares = GPU_SHARES.get(base.model.backbone, ())
    per_worker = next((share for size, share in shares if base.views.size <= size), 1.0)
    return (
        min(per_worker * workers_per_trial, cluster_gpus)
        if per_worker < 1
        else float(workers_per_trial)
    )


def with_gpus(config: StudyConfig, base: TrainConfig, cluster_gpus: float) -> StudyConfig:
    """``config`` with ``gpus_per_trial`` resolved against the cluster (kept when given)."""
    if config.gpus_per_trial is not None:
        return config
    return dataclasses.replace(
        config, gpus_per_trial=default_gpus_per_trial(base, config.workers_per_trial, cluster_gpus)
    )
