"""Cutout and cutout-blur (paper 3.2, Fig. 4): the image with a hole filled, and the hole.

The blur's strength ``blur`` is the share of the hole's shorter side that its Gaussian kernel
spans (see :class:`~trainables.views.cutout.Cutout`). Its kernel must span at least 3 output
pixels of the shortest side a hole can have, so the smallest valid ``blur`` depends on the hole
and on the view size: the define-by-run derives the lower bound of ``blur`` from the hole it has
just drawn, and the grid skips blur points that do not fit, as the paper's Fig. 4 does.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from search_spaces.common import FAMILY, DefineFn, Point, decimal_steps, view_param
from trainables.validation import ConfigError, check_range
from trainables.views.boxes import shortest_side_on_square
from trainables.views.families import FILLS, RATIO
from trainables.views.render import smallest_fitting_blur

if TYPE_CHECKING:
    import optuna

HOLE = view_param("hole")
FILL = view_param("fill")
BLUR = view_param("blur")
HOLE_RANGE = (0.1, 0.7)
GRID_STEP = 0.1
BLUR_RANGE = (0.25, 1.0)
"""The searched strengths: from a kernel spanning a quarter of the hole's shorter side
to all of it."""
GRID_BLURS = (0.5, 1.0)
"""The grid's strengths: the kernel spans half the hole's shorter side, or all of it."""
DEFAULT_SIZE = 32


def min_blur(hole: float, size: int) -> float:
    """The smallest ``blur`` that the Cutout family accepts for ``hole`` at ``size`` px views
    (above 1 when none does): its kernel spans 3 px of the shortest side such a hole can have."""
    return smallest_fitting_blur(shortest_side_on_square(hole, RATIO) * size)


def blur_fits(hole: float, blur: float, size: int) -> bool:
    """Whether the Cutout family accepts ``blur`` for ``hole`` at ``size``."""
    return min_blur(hole, size) <= blur <= 1


def blur_low(hole: float, size: int) -> float:
    """The define-by-run's lowest ``blur`` for ``hole``: what fits, and at least
    ``BLUR_RANGE[0]``."""
    return max(BLUR_RANGE[0], min_blur(hole, size))


def blur_searchable(size: int) -> bool:
    """Whether every hole of ``HOLE_RANGE`` admits some blur of ``BLUR_RANGE``."""
    return blur_low(HOLE_RANGE[0], size) <= BLUR_RANGE[1]


def _check_size(size: int) -> int:
    check_range("views.size", size, 1, integer=True)
    if not blur_searchable(size):
        smallest = next(side for side in range(size + 1, 10 * size + 100) if blur_searchable(side))
        raise ConfigError(
            "views.size",
            size,
            f"at least {smallest} px, so that a blur of at most {BLUR_RANGE[1]} fits the "
            f"smallest searched hole ({HOLE_RANGE[0]} of the view)",
        )
    return size


def define(trial: optuna.Trial, size: int = DEFAULT_SIZE) -> dict[str, Any]:
    """Hole size and fill; with ``fill == "blur"`` also ``blur`` from what fits the drawn hole at
    ``size`` (at least ``BLUR_RANGE[0]``) up to ``BLUR_RANGE[1]``."""
    hole = trial.suggest_float(HOLE, *HOLE_RANGE)
    fill = trial.suggest_categorical(FILL, list(FILLS))
    if fill == "blur":
        trial.suggest_float(BLUR, blur_low(hole, size), BLUR_RANGE[1])
    return {FAMILY: "cutout"}


def define_for(size: int) -> DefineFn:
    """:func:`define` for views of ``size`` pixels."""
    return functools.partial(define, size=_check_size(size))


def grid(size: int = DEFAULT_SIZE, blurs: tuple[float, ...] = GRID_BLURS) -> list[Point]:
    """Per hole 0.1, ..., 0.7: cutout (``fill=zero``), then cutout-blur (``fill=blur``) at each
    of ``blurs`` that fits the hole at ``size``."""
    check_range("views.size", size, 1, integer=True)
    points: list[Point] = []
    for hole in decimal_steps(*HOLE_RANGE, GRID_STEP):
        points.append({FAMILY: "cutout", HOLE: hole, FILL: "zero"})
        points.extend(
            {FAMILY: "cutout", HOLE: hole, FILL: "blur", BLUR: blur}
            for blur in blurs
            if blur_fits(hole, blur, size)
        )
    return points
