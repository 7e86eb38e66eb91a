"""The margin on the SimSiam loss (paper 3.3, Fig. 5): none, fixed ``m``, or ``k`` x distance.

The margin family keeps the base configuration's views (random crops in every recipe), so it
overrides only ``margin.*``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from search_spaces.common import Point
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


def grid() -> list[Point]:
    """The paper's three runs: vanilla, fixed margin 0.2 and the distance-based margin."""
    return [
        {MODE: "none"},
        {MODE: "fixed", FIXED_MARGIN: PAPER_FIXED_MARGIN},
        {MODE: "distance", DISTANCE_SCALE: DEFAULT_DISTANCE_SCALE},
    ]
