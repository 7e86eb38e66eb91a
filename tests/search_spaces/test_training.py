"""with_training: learning rate and weight decay searched log-uniformly alongside any space."""

import math

import optuna
import pytest

from search_spaces import SEARCH_SPACES, with_training
from search_spaces.training import DEFAULT_LR_RANGE, DEFAULT_WEIGHT_DECAY_RANGE
from tests.search_spaces.helpers import assert_overrides_applied, run_define
from trainables.recipes import recipe
from trainables.validation import ConfigError

LR = (0.01, 1.0)
WEIGHT_DECAY = (1e-5, 1e-3)


@pytest.mark.parametrize("name", sorted(SEARCH_SPACES))
def test_adds_both_parameters_log_uniformly_within_bounds(name: str) -> None:
    base = recipe("digits")
    define = with_training(SEARCH_SPACES[name].define(16), lr=LR, weight_decay=WEIGHT_DECAY)
    for trial, constants in run_define(define, 30):
        for key, (low, high) in (("optim.base_lr", LR), ("optim.weight_decay", WEIGHT_DECAY)):
            distribution = trial.distributions[key]
            assert isinstance(distribution, optuna.distributions.FloatDistribution)
            assert distribution.log
            assert (distribution.low, distribution.high) == (low, high)
            assert low <= trial.params[key] <= high
        overrides = {**trial.params, **constants}
        assert_overrides_applied(base.replace(**overrides), overrides)


def test_keeps_the_wrapped_constants() -> None:
    define = with_training(SEARCH_SPACES["exclusive"].define(16))
    [(trial, constants)] = run_define(define, 1)
    assert constants == {"views.family": "exclusive", "views.params.crop": 0.1}
    assert {"views.params.gap", "optim.base_lr", "optim.weight_decay"} == set(trial.params)


def test_defaults_span_the_recipes_values() -> None:
    for name in ("cifar", "imagenet", "digits"):
        config = recipe(name)
        assert DEFAULT_LR_RANGE[0] <= config.optim.base_lr <= DEFAULT_LR_RANGE[1]
        assert (
            DEFAULT_WEIGHT_DECAY_RANGE[0]
            <= config.optim.weight_decay
            <= DEFAULT_WEIGHT_DECAY_RANGE[1]
        )


def test_samples_are_spread_evenly_in_log_space() -> None:
    define = with_training(SEARCH_SPACES["overlap"].define(16), lr=(1e-4, 1.0), weight_decay=None)
    samples = [
        t.params["optim.base_lr"]
        for t, _ in run_define(define, 300, optuna.samplers.RandomSampler(seed=0))
    ]
    below_geometric_middle = sum(value < 1e-2 for value in samples) / len(samples)
    assert 0.4 < below_geometric_middle < 0.6  # a uniform draw would put ~1% there
    assert min(samples) < 1e-3 and max(samples) > 0.1
    assert all(math.isfinite(value) for value in samples)


def test_none_leaves_a_hyperparameter_alone() -> None:
    define = with_training(SEARCH_SPACES["patch"].define(16), lr=None, weight_decay=WEIGHT_DECAY)
    [(trial, _)] = run_define(define, 1)
    assert "optim.base_lr" not in trial.params and "optim.weight_decay" in trial.params
    bare = with_training(SEARCH_SPACES["patch"].define(16), lr=None, weight_decay=None)
    [(trial, _)] = run_define(bare, 1)
    assert set(trial.params) == {"views.params.patch"}


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (0.5, 0.1), (-1.0, 1.0)])
def test_rejects_ranges_that_are_not_positive_and_ordered(bounds: tuple[float, float]) -> None:
    with pytest.raises(ConfigError) as error:
        with_training(SEARCH_SPACES["patch"].define(16), lr=bounds)
    assert error.value.field == "optim.base_lr"
