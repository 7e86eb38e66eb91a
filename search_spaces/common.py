"""Shared vocabulary of the search spaces: dotted override paths and define-by-run functions.

A trial's configuration is ``base_config.replace(**overrides)``, so every parameter is named by
its dotted :class:`~trainables.config.TrainConfig` path (``"views.params.overlap"``) and that
path is also the Optuna parameter name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    import optuna

Point: TypeAlias = dict[str, Any]
"""Dotted overrides of one configuration, e.g. ``{"views.family": "overlap", "seed": 0}``."""

DefineFn: TypeAlias = "Callable[[optuna.Trial], dict[str, Any]]"
"""A define-by-run space: suggests dotted parameters on the trial and returns the constant
overrides it does not suggest, as Ray Tune's ``OptunaSearch(space=define_fn)`` expects."""

FAMILY = "views.family"
SEED = "seed"
BASE_LR = "optim.base_lr"
WEIGHT_DECAY = "optim.weight_decay"

DECIMALS = 4


def view_param(name: str) -> str:
    """The dotted path of a view family's parameter, e.g. ``views.params.overlap``."""
    return f"views.params.{name}"


def clean(value: float) -> float:
    """``value`` as a clean decimal (0.3, not 0.30000000000000004)."""
    return round(value, DECIMALS)


def decimal_steps(first: float, last: float, step: float) -> list[float]:
    """``first, first + step, ..., last`` (inclusive) as clean decimals."""
    count = round((last - first) / step)
    return [clean(first + index * step) for index in range(count + 1)]


@dataclass(frozen=True)
class WithConstants:
    """A define-by-run that also returns fixed overrides (a seed, say). Picklable, because
    Ray Tune checkpoints the searcher and its space."""

    define: DefineFn
    constants: Mapping[str, Any]

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        return {**self.define(trial), **self.constants}
