"""Running define-by-run spaces against real in-memory Optuna studies, and reading configs."""

from collections.abc import Callable
from typing import Any

import optuna

from trainables.config import TrainConfig

DefineFn = Callable[[optuna.Trial], dict[str, Any]]


def objective(params: dict[str, Any]) -> float:
    """A deterministic score so that TPE leaves its random startup and models the trials."""
    return sum(float(value) for value in params.values() if isinstance(value, (int, float)))


def run_define(
    define: DefineFn, trials: int, sampler: optuna.samplers.BaseSampler | None = None
) -> list[tuple[optuna.Trial, dict[str, Any]]]:
    """Ask ``trials`` trials of an in-memory study, run ``define`` on each and tell a score."""
    study = optuna.create_study(sampler=sampler or optuna.samplers.TPESampler(seed=0))
    asked = []
    for _ in range(trials):
        trial = study.ask()
        constants = define(trial)
        study.tell(trial, objective(trial.params))
        asked.append((trial, constants))
    return asked


def config_value(config: TrainConfig, path: str) -> Any:
    """The value at a dotted path of a built config."""
    node: Any = config.to_dict()
    for key in path.split("."):
        node = node[key]
    return node


def assert_overrides_applied(config: TrainConfig, overrides: dict[str, Any]) -> None:
    for path, value in overrides.items():
        assert config_value(config, path) == value, path
