"""Patch augmentation (paper 3.1, Fig. 2b): the whole image and a patch of ``patch`` of it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from search_spaces.common import FAMILY, Point, decimal_steps, view_param

if TYPE_CHECKING:
    import optuna

PATCH = view_param("patch")
PATCH_RANGE = (0.1, 0.9)
GRID_STEP = 0.1


def define(trial: optuna.Trial) -> dict[str, Any]:
    trial.suggest_float(PATCH, *PATCH_RANGE)
    return {FAMILY: "patch"}


def grid() -> list[Point]:
    """The paper's patch sizes 0.1, 0.2, ..., 0.9."""
    return [{FAMILY: "patch", PATCH: value} for value in decimal_steps(*PATCH_RANGE, GRID_STEP)]
