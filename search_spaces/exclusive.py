"""Mutually exclusive crops (paper 3.1, Fig. 3), parameterised by the exclusive region's area.

The crop area is pinned to ``CROP`` (the family's default, 0.2 of the image) so that the
family's feasibility condition ``gap + 2 * crop <= 1`` holds for every gap up to 0.6. The
searched gaps stop at 0.4, well inside that limit: at 0.6 the two crops and the gap fill the
image exactly and their placement has no freedom left.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from search_spaces.common import FAMILY, Point, view_param

if TYPE_CHECKING:
    import optuna

GAP = view_param("gap")
CROP = view_param("crop")
CROP_AREA = 0.2
GAP_RANGE = (0.02, 0.4)
GRID_GAPS = (0.05, 0.1, 0.2, 0.3, 0.4)


def constants() -> dict[str, Any]:
    return {FAMILY: "exclusive", CROP: CROP_AREA}


def define(trial: optuna.Trial) -> dict[str, Any]:
    trial.suggest_float(GAP, *GAP_RANGE)
    return constants()


def grid() -> list[Point]:
    return [{**constants(), GAP: gap} for gap in GRID_GAPS]
