"""Runs stop themselves when they diverge or collapse, and say why."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trainables.health import HealthConfig, reason_kind, stop_reason
from trainables.recipes import recipe
from trainables.train import train
from trainables.validation import ConfigError

DIM = 512
HEALTHY = 1 / math.sqrt(DIM)


def epochs(*z_stds, loss=-0.5):
    return [
        {"epoch": index, "loss": loss, "z_std": z_std}
        for index, z_std in enumerate(z_stds, start=1)
    ]


@pytest.mark.parametrize("loss", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_loss_is_divergence_at_once(loss):
    reason = stop_reason(epochs(HEALTHY, HEALTHY, loss=loss), DIM, HealthConfig())
    assert reason_kind(reason) == "diverged"
    assert f"loss is {loss} at epoch 2" in reason


def test_collapse_needs_the_set_number_of_low_epochs_in_a_row():
    config = HealthConfig(collapse_ratio=0.1, collapse_epochs=3)
    low = 0.05 * HEALTHY
    assert stop_reason(epochs(HEALTHY, low, low), DIM, config) is None
    assert stop_reason(epochs(low, low, HEALTHY, low, low), DIM, config) is None
    reason = stop_reason(epochs(HEALTHY, low, low, low), DIM, config)
    assert reason_kind(reason) == "collapsed" and "(2-4)" in reason and "0.1 / sqrt(512)" in reason
    assert stop_reason(epochs(low, low, low), DIM, HealthConfig(collapse_epochs=0)) is None, (
        "0 turns the check off"
    )


@given(
    st.lists(
        st.tuples(st.floats(-1, 1), st.floats(0.1 * HEALTHY * 1.0001, 1)), min_size=1, max_size=20
    )
)
def test_finite_losses_and_varied_outputs_never_stop(history):
    rows = [
        {"epoch": index, "loss": loss, "z_std": z_std}
        for index, (loss, z_std) in enumerate(history, start=1)
    ]
    assert stop_reason(rows, DIM, HealthConfig(collapse_ratio=0.1, collapse_epochs=1)) is None


@pytest.mark.parametrize(
    ("field", "value"), [("collapse_ratio", 0), ("collapse_ratio", 1.5), ("collapse_epochs", -1)]
)
def test_bad_health_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=f"health.{field}={value}"):
        HealthConfig(**{field: value})


def test_a_diverging_run_stops_after_the_epoch_it_diverged_in(tmp_path):
    config = recipe(
        "digits", **{"data.limit": 128, "data.eval_limit": 100, "epochs": 5, "optim.base_lr": 1e8}
    )
    reports = []
    history = train(
        config,
        lambda metrics, checkpoint: reports.append((dict(metrics), checkpoint)),
        workdir=tmp_path,
    )
    assert len(history) == len(reports) == 1, "the remaining four epochs are not run"
    last = history[-1]
    assert last["epoch"] == 1 and not math.isfinite(last["loss"])
    assert reason_kind(last["stop_reason"]) == "diverged"
    assert math.isnan(last["knn_top1"]), "no accuracy is claimed for a diverged model"
    assert (reports[0][1] / "checkpoint.pt").is_file()
