"""Mutually exclusive crops (paper 3.1, Fig. 3), parameterised by the exclusive region's area.

The crop area is pinned to ``CROP_AREA`` and the gaps stay where the crops keep random freedom
(:func:`~trainables.views.pairs.largest_exclusive_gap`: at least the lower half of the aspect
range open, and the second crop free to slide across). For crops of 0.1 of the image that is a
gap of up to 0.116; a larger gap forces one shape and one centre distance, so a trend over it
would measure the shape. The paper does not give its gaps; the grid spreads five over the
feasible region.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from search_spaces.common import FAMILY, Point, view_param

if TYPE_CHECKING:
    import optuna

GAP = view_param("gap")
CROP = view_param("crop")
CROP_AREA = 0.1
GAP_RANGE = (0.01, 0.11)
GRID_GAPS = (0.02, 0.04, 0.06, 0.08, 0.1)


def constants() -> dict[str, Any]:
    return {FAMILY: "exclusive", CROP: CROP_AREA}


def define(trial: optuna.Trial) -> dict[str, Any]:
    trial.suggest_float(GAP, *GAP_RANGE)
    return constants()


def grid() -> list[Point]:
    return [{**constants(), GAP: gap} for gap in GRID_GAPS]
