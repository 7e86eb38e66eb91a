"""Training hyperparameters that can be searched jointly with any view space."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from search_spaces.common import BASE_LR, WEIGHT_DECAY, DefineFn
from trainables.validation import ConfigError

if TYPE_CHECKING:
    import optuna

Range = tuple[float, float]

DEFAULT_LR_RANGE: Range = (0.01, 1.0)
"""Around the recipes' base learning rates (0.03 cifar, 0.05 imagenet, 0.5 digits)."""
DEFAULT_WEIGHT_DECAY_RANGE: Range = (1e-5, 1e-3)
"""Around the recipes' weight decays (5e-4 cifar and digits, 1e-4 imagenet)."""


def _check_log_range(field: str, bounds: Range) -> Range:
    low, high = bounds
    if not (0 < low <= high):
        raise ConfigError(field, bounds, "a pair (low, high) with 0 < low <= high")
    return float(low), float(high)


def with_training(
    define_fn: DefineFn,
    lr: Range | None = DEFAULT_LR_RANGE,
    weight_decay: Range | None = DEFAULT_WEIGHT_DECAY_RANGE,
) -> DefineFn:
    """``define_fn`` that also suggests ``optim.base_lr`` and ``optim.weight_decay``
    log-uniformly in the given bounds; a ``None`` range leaves that hyperparameter alone."""
    searched = {
        name: _check_log_range(name, bounds)
        for name, bounds in ((BASE_LR, lr), (WEIGHT_DECAY, weight_decay))
        if bounds is not None
    }

    return functools.partial(_define_with_training, define_fn=define_fn, searched=searched)


def _define_with_training(
    trial: optuna.Trial, define_fn: DefineFn, searched: dict[str, Range]
) -> dict[str, Any]:
    constants = define_fn(trial)
    for name, (low, high) in searched.items():
        trial.suggest_float(name, low, high, log=True)
    return constants
