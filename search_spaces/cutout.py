"""Cutout and cutout-blur (paper 3.2, Fig. 4): the image with a hole filled, and the hole.

The blur's Gaussian kernel (``2 * ceil(3 * sigma) + 1`` output pixels) must fit inside the hole
(side ``sqrt(hole) * size`` output pixels), so the largest valid ``blur_sigma`` depends on the
hole and on the view size: the define-by-run derives the upper bound of ``blur_sigma`` from the
hole it has just drawn, and the grid skips blur points whose kernel would not fit, as the
paper's Fig. 4 does.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

from search_spaces.common import FAMILY, DefineFn, Point, decimal_steps, view_param
from trainables.validation import ConfigError, check_range
from trainables.views.families import FILLS
from trainables.views.render import blur_kernel_size

if TYPE_CHECKING:
    import optuna

HOLE = view_param("hole")
FILL = view_param("fill")
BLUR_SIGMA = view_param("blur_sigma")
HOLE_RANGE = (0.1, 0.7)
GRID_STEP = 0.1
GRID_FILLS = ("zero", "blur")
BLUR_SIGMA_LOW = 0.25
DEFAULT_BLUR_SIGMA = 1.0
"""The grid's blur, in output pixels (the Cutout family's default): a 7 px kernel."""
DEFAULT_SIZE = 32


def hole_side(hole: float, size: int) -> float:
    """The side in output pixels of a square hole covering ``hole`` of a ``size`` px view."""
    return math.sqrt(hole) * size


def blur_fits(hole: float, blur_sigma: float, size: int) -> bool:
    """Whether the blur kernel fits inside the hole, exactly as the Cutout family checks it."""
    return blur_kernel_size(blur_sigma) <= hole_side(hole, size)


def max_blur_sigma(hole: float, size: int) -> float:
    """The largest ``blur_sigma`` whose kernel fits the hole; 0.0 when no blur fits.

    The kernel ``2 * ceil(3 * sigma) + 1`` fits a side ``s`` iff ``ceil(3 * sigma) <=
    floor((s - 1) / 2)``, hence ``sigma <= floor((s - 1) / 2) / 3``, stepped down past any
    rounding error so that every value up to the bound is accepted.
    """
    half_width = math.floor((hole_side(hole, size) - 1) / 2)
    if half_width < 1:
        return 0.0
    sigma = half_width / 3
    while not blur_fits(hole, sigma, size):
        sigma = math.nextafter(sigma, 0.0)
    return sigma


def blur_searchable(size: int) -> bool:
    """Whether every hole of ``HOLE_RANGE`` admits some blur of at least ``BLUR_SIGMA_LOW``."""
    return max_blur_sigma(HOLE_RANGE[0], size) >= BLUR_SIGMA_LOW


def _check_size(size: int) -> int:
    check_range("views.size", size, 1, integer=True)
    if not blur_searchable(size):
        smallest = next(side for side in range(size + 1, 10 * size + 100) if blur_searchable(side))
        raise ConfigError(
            "views.size",
            size,
            f"at least {smallest} px, so that a blur of sigma {BLUR_SIGMA_LOW} fits the "
            f"smallest searched hole ({HOLE_RANGE[0]} of the view)",
        )
    return size


def define(trial: optuna.Trial, size: int = DEFAULT_SIZE) -> dict[str, Any]:
    """Hole size and fill; with ``fill == "blur"`` also ``blur_sigma`` in output pixels, from
    ``BLUR_SIGMA_LOW`` up to the largest sigma whose kernel fits the drawn hole at ``size``."""
    hole = trial.suggest_float(HOLE, *HOLE_RANGE)
    fill = trial.suggest_categorical(FILL, list(FILLS))
    if fill == "blur":
        trial.suggest_float(BLUR_SIGMA, BLUR_SIGMA_LOW, max_blur_sigma(hole, size))
    return {FAMILY: "cutout"}


def define_for(size: int) -> DefineFn:
    """:func:`define` for views of ``size`` pixels."""
    return functools.partial(define, size=_check_size(size))


def grid(size: int = DEFAULT_SIZE, blur_sigma: float = DEFAULT_BLUR_SIGMA) -> list[Point]:
    """Cutout (``fill=zero``) and cutout-blur (``fill=blur``) at holes 0.1, ..., 0.7, leaving out
    the blur points whose kernel does not fit the hole at ``size``."""
    check_range("views.size", size, 1, integer=True)
    points: list[Point] = []
    for hole in decimal_steps(*HOLE_RANGE, GRID_STEP):
        for fill in GRID_FILLS:
            point: Point = {FAMILY: "cutout", HOLE: hole, FILL: fill}
            if fill == "blur":
                if not blur_fits(hole, blur_sigma, size):
                    continue
                point[BLUR_SIGMA] = blur_sigma
            points.append(point)
    return points
