"""Overlap augmentation (paper 3.1, Fig. 2a): two crops sharing ``overlap`` of the image."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from search_spaces.common import FAMILY, Point, decimal_steps, view_param

if TYPE_CHECKING:
    import optuna

OVERLAP = view_param("overlap")
OVERLAP_RANGE = (0.1, 0.9)
GRID_STEP = 0.1


def define(trial: optuna.Trial) -> dict[str, Any]:
    trial.suggest_float(OVERLAP, *OVERLAP_RANGE)
    return {FAMILY: "overlap"}


def grid() -> list[Point]:
    """The paper's overlap sizes 0.1, 0.2, ..., 0.9."""
    return [
        {FAMILY: "overlap", OVERLAP: value} for value in decimal_steps(*OVERLAP_RANGE, GRID_STEP)
    ]
