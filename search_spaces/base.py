"""The registry of search spaces: one entry per view family of the paper, and the margin."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from search_spaces import cutout, exclusive, margin, overlap, patch
from search_spaces.common import DefineFn, Point
from trainables.config import TrainConfig
from trainables.validation import check_choice

DefineFactory = Callable[[int], DefineFn]
GridFactory = Callable[[TrainConfig], list[Point]]


@dataclass(frozen=True)
class SearchSpace:
    """A named space of dotted overrides.

    ``define(size)`` gives the define-by-run for Optuna/Ray Tune, for views of ``size`` output
    pixels (only cutout depends on it), and ``grid(base)`` the paper's grid points for a study
    on the base configuration ``base`` (cutout's depend on its view size, the margin's matched
    distance arm on its views and images). ``family`` is the view family the space sets, or
    ``"margin"``.
    """

    name: str
    family: str
    description: str
    define: DefineFactory
    grid: GridFactory


def _sized(define_fn: DefineFn) -> DefineFactory:
    def at_size(size: int) -> DefineFn:
        return define_fn

    return at_size


def _fixed_grid(grid_fn: Callable[[], list[Point]]) -> GridFactory:
    def for_base(base: TrainConfig) -> list[Point]:
        return grid_fn()

    return for_base


def _cutout_grid(base: TrainConfig) -> list[Point]:
    return cutout.grid(base.views.size)


SEARCH_SPACES: dict[str, SearchSpace] = {
    space.name: space
    for space in (
        SearchSpace(
            name="overlap",
            family="overlap",
            description=f"overlap area in {list(overlap.OVERLAP_RANGE)}; grid 0.1..0.9 (Fig. 2a)",
            define=_sized(overlap.define),
            grid=_fixed_grid(overlap.grid),
        ),
        SearchSpace(
            name="patch",
            family="patch",
            description=f"patch area in {list(patch.PATCH_RANGE)}; grid 0.1..0.9 (Fig. 2b)",
            define=_sized(patch.define),
            grid=_fixed_grid(patch.grid),
        ),
        SearchSpace(
            name="exclusive",
            family="exclusive",
            description=(
                f"exclusive-region area in {list(exclusive.GAP_RANGE)} between crops of "
                f"{exclusive.CROP_AREA}; grid {list(exclusive.GRID_GAPS)} (Fig. 3)"
            ),
            define=_sized(exclusive.define),
            grid=_fixed_grid(exclusive.grid),
        ),
        SearchSpace(
            name="cutout",
            family="cutout",
            description=(
                f"hole area in {list(cutout.HOLE_RANGE)}, fill zero|blur|none, blur strength (the "
                f"kernel's share of the hole's shorter side) in {list(cutout.BLUR_RANGE)} from "
                f"what fits the hole; grid zero vs blur {list(cutout.GRID_BLURS)} per hole "
                "0.1..0.7, without blur points whose kernel does not fit (Fig. 4)"
            ),
            define=cutout.define_for,
            grid=_cutout_grid,
        ),
        SearchSpace(
            name="margin",
            family="margin",
            description=(
                f"loss margin none | fixed m in {list(margin.FIXED_MARGIN_RANGE)} | distance k in "
                f"{list(margin.DISTANCE_SCALE_RANGE)}; grid vanilla, fixed "
                f"{margin.PAPER_FIXED_MARGIN}, distance k={margin.DEFAULT_DISTANCE_SCALE} "
                f"(the paper's) and distance k = {margin.PAPER_FIXED_MARGIN} / E[phi] "
                "(the fixed margin's mean size) (Fig. 5)"
            ),
            define=_sized(margin.define),
            grid=margin.grid_for,
        ),
    )
}


def get_space(name: str) -> SearchSpace:
    return SEARCH_SPACES[check_choice("search_space", name, SEARCH_SPACES)]
