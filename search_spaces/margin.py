"""The margin on the SimSiam loss (paper 3.3, Fig. 5): none, fixed ``m``, or ``k`` x distance.

The margin family keeps the base configuration's views (random crops in every recipe), so it
overrides only ``margin.*``. The paper's distance arm ``k=1`` floors a term at ``-1 + phi``,
whose mean is ``E[phi]`` (about 0.1 for random crops), half the fixed arm's 0.2, so the grid
adds a distance arm of the fixed margin's mean size, ``k = m / E[phi]``, with ``E[phi]`` from
the study's own views on its images' size: the fixed and the matched arm then differ only in
how the margin depends on the distance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from search_spaces.common import Point, clean
from trainables.config import TrainConfig
from trainables.data import DATASETS
from trainables.loss import MARGIN_MODES

if TYPE_CHECKING:
    import optuna

MODE = "margin.mode"
FIXED_MARGIN = "margin.m"
DISTANCE_SCALE = "margin.k"
FIXED_MARGIN_RANGE = (0.05, 0.5)
DISTANCE_SCALE_RANGE = (0.0, 2.0)
PAPER_FIXED_MARGIN = 0.2
DEFAULT_DISTANCE_SCALE = 1.0
"""``k`` of the grid's distance-based margin: ``m = phi``, the views' centre distance over the
image diagonal, so each loss term's floor ``-1 + phi`` rises with the views' distance."""


def define(trial: optuna.Trial) -> dict[str, Any]:
    mode = trial.suggest_categorical(MODE, list(MARGIN_MODES))
    if mode == "fixed":
        trial.suggest_float(FIXED_MARGIN, *FIXED_MARGIN_RANGE)
    elif mode == "distance":
        trial.suggest_float(DISTANCE_SCALE, *DISTANCE_SCALE_RANGE)
    return {}


PHI_SAMPLES = 20_000
"""Pairs drawn to estimate ``E[phi]`` (its standard error is then about 0.3% of it)."""


def mean_phi(base: TrainConfig, samples: int = PHI_SAMPLES) -> float:
    """The mean centre distance over the image diagonal of ``base``'s views on images of its
    dataset's size (:attr:`~trainables.data.DatasetInfo.image_size`), from a fixed seed."""
    height, width = DATASETS[base.data.dataset].image_size
    geometry = base.views.build().sample(samples, height, width, torch.Generator().manual_seed(0))
    return float(geometry.phi.mean())


def matched_distance_scale(base: TrainConfig, margin: float = PAPER_FIXED_MARGIN) -> float:
    """``k`` whose distance margin ``k * phi`` has the mean ``margin`` on ``base``'s views."""
    return clean(margin / mean_phi(base))


def grid(matched_scale: float | None = None) -> list[Point]:
    """The paper's three runs, vanilla, fixed margin 0.2 and the distance-based margin ``k=1``,
    and with ``matched_scale`` the distance arm of the fixed margin's mean size."""
    points: list[Point] = [
        {MODE: "none"},
        {MODE: "fixed", FIXED_MARGIN: PAPER_FIXED_MARGIN},
        {MODE: "distance", DISTANCE_SCALE: DEFAULT_DISTANCE_SCALE},
    ]
    if matched_scale is not None and matched_scale != DEFAULT_DISTANCE_SCALE:
        points.append({MODE: "distance", DISTANCE_SCALE: matched_scale})
    return points


def grid_for(base: TrainConfig) -> list[Point]:
    """:func:`grid` with the distance arm matched to the fixed margin on ``base``'s views."""
    return grid(matched_distance_scale(base))
