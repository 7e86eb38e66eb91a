"""Grid mode: explicit points, their seeds, and a define-by-run that reproduces enqueued points.

In grid mode every point is enqueued (``study.enqueue_trial(point)`` or Ray Tune's
``points_to_evaluate``) and the study runs exactly one trial per point. :func:`grid_define`
suggests each key of the points categorically over all its grid values, so the enqueued values
are accepted as fixed parameters and ``trial.params`` equals the point.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from numbers import Real
from typing import TYPE_CHECKING, Any

from search_spaces.common import SEED, DefineFn, Point
from trainables.validation import ConfigError, check_range

if TYPE_CHECKING:
    import optuna


def _value_order(value: Any) -> tuple[int, Any]:
    """Numbers first, by value, then everything else (strings, None) by its repr."""
    if isinstance(value, Real) and not isinstance(value, bool):
        return (0, value)
    return (1, repr(value))


def ordered_keys(points: Iterable[Point]) -> list[str]:
    """Every key of the points, in order of first appearance."""
    return list(dict.fromkeys(key for point in points for key in point))


def grid_search_space(points: Sequence[Point]) -> dict[str, list[Any]]:
    """Per dotted key (in order of first appearance), the sorted unique values across points."""
    values: dict[str, list[Any]] = {key: [] for key in ordered_keys(points)}
    for point in points:
        for key, value in point.items():
            if value not in values[key]:
                values[key].append(value)
    return {key: sorted(found, key=_value_order) for key, found in values.items()}


def _suggest_point(
    suggest: Callable[[str, list[Any]], Any], points: Sequence[Point], space: dict[str, list[Any]]
) -> dict[str, Any]:
    """Walk the keys in order, suggesting a key only while some point still consistent with the
    values drawn so far has it; keys absent from those points (conditional ones) are skipped."""
    candidates = list(points)
    drawn: dict[str, Any] = {}
    for key, choices in space.items():
        if not any(key in point for point in candidates):
            continue
        drawn[key] = suggest(key, choices)
        candidates = [point for point in candidates if key in point and point[key] == drawn[key]]
    return drawn


def _check_reproducible(points: Sequence[Point], space: dict[str, list[Any]]) -> None:
    for point in points:
        replayed = _suggest_point(lambda key, _choices, point=point: point.get(key), points, space)
        if replayed != point:
            raise ConfigError(
                "points",
                point,
                "grid points that their keys tell apart: this point lacks a key that another "
                "point agreeing with it on every earlier key has",
            )


def grid_define(points: Sequence[Point]) -> DefineFn:
    """A define-by-run over the grid: enqueue a point and the trial's params are that point.

    A trial that was not enqueued draws each key independently and may land off the grid.
    """
    points = [dict(point) for point in points]
    if not points:
        raise ConfigError("points", points, "at least one grid point")
    space = grid_search_space(points)
    _check_reproducible(points, space)

    return functools.partial(_define_grid, points=points, space=space)


def _define_grid(
    trial: optuna.Trial, points: list[Point], space: dict[str, list[Any]]
) -> dict[str, Any]:
    _suggest_point(trial.suggest_categorical, points, space)
    return {}


def check_seeds(seeds: Sequence[int], field: str = "seeds") -> tuple[int, ...]:
    """``seeds`` as a tuple if it is a non-empty sequence of distinct non-negative integers."""
    for seed in seeds:
        check_range(field, seed, 0, integer=True)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(field, tuple(seeds), "one or more distinct seeds")
    return tuple(seeds)


def with_seeds(points: Sequence[Point], seeds: Sequence[int]) -> list[Point]:
    """Every point once per seed (points outer, seeds inner), with ``"seed": s`` added."""
    check_seeds(seeds)
    return [{**point, SEED: seed} for point in points for seed in seeds]


def select_points(
    points: Sequence[Point], grid_only: Mapping[str, Any], field: str = "grid_only"
) -> list[Point]:
    """The grid points whose value at every key of ``grid_only`` is one of the values listed (a
    single value is a list of one); errors name ``field`` (the study's ``grid_only``, a preset's
    ``preset.grid_only``) and repeat the value as given."""
    if not grid_only:
        return list(points)
    if not points:
        raise ConfigError(field, dict(grid_only), "only with a grid (--grid, or a grid preset)")
    given, grid_only = grid_only, {
        key: list(values) if isinstance(values, (list, tuple)) else [values]
        for key, values in grid_only.items()
    }
    for key, wanted in grid_only.items():
        offered = [value for value in dict.fromkeys(point[key] for point in points if key in point)]
        if not offered:
            keys = sorted({name for point in points for name in point})
            raise ConfigError(field, key, f"a key of the grid points: {keys}")
        for value in wanted:
            if value not in offered:
                raise ConfigError(f"{field}.{key}", value, f"one of the grid's values {offered}")
    selected = [
        point
        for point in points
        if all(point.get(key) in wanted for key, wanted in grid_only.items())
    ]
    if not selected:
        raise ConfigError(
            field, dict(given), "values that together match at least one grid point"
        )
    return selected
