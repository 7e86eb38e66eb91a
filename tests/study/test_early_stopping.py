"""The rank-correlation check of ASHA's rungs on synthetic trials and epochs (pure, no sweep)."""

import pandas as pd
import pytest
from scipy import stats

from study.config import Asha, rung_epochs
from study.early_stopping import SAFE_CORRELATION, check_early_stopping, summary_metrics
from study.vocabulary import RANK_CORRELATION_METRIC, RANK_CORRELATION_TRIALS_METRIC


def epochs_frame(curves):
    return pd.DataFrame(
        [
            {"trial_id": trial, "epoch": epoch, "knn_top1": score}
            for trial, curve in curves.items()
            for epoch, score in enumerate(curve, start=1)
        ]
    )


def test_early_stopping_check_correlates_each_rung_with_the_end():
    curves = {
        "a": [0.1, 0.2, 0.3, 0.9],
        "b": [0.2, 0.3, 0.4, 0.8],
        "c": [0.3, 0.1, 0.5, 0.7],
        "d": [0.4, 0.5, 0.6, 0.6],
        "stopped": [0.9],
    }
    trials = pd.DataFrame({"trial_id": list(curves), "status": ["FINISHED"] * 4 + ["STOPPED"]})
    check = check_early_stopping(trials, epochs_frame(curves), Asha(1, 2, 4), on=True)
    assert [rung.epoch for rung in check.rungs] == [1, 2] and check.finished == 4
    assert check.at_grace.rho == pytest.approx(-1.0) and check.at_grace.count == 4
    assert check.rungs[1].correlation.rho == pytest.approx(
        stats.spearmanr([0.2, 0.3, 0.1, 0.5], [0.9, 0.8, 0.7, 0.6]).statistic
    )
    assert f"< {SAFE_CORRELATION}" in check.warning()
    assert summary_metrics(check) == {
        RANK_CORRELATION_TRIALS_METRIC: 4.0,
        RANK_CORRELATION_METRIC: pytest.approx(-1.0),
    }
    few = check_early_stopping(trials.iloc[[0, 1, 4]], epochs_frame(curves), Asha(1, 2, 4), on=True)
    assert not few.at_grace.defined and "only 2 trials ran every epoch (needs 3)" in few.warning()
    assert RANK_CORRELATION_METRIC not in summary_metrics(few)
    agreeing = {name: [score / 2, score] for name, score in zip("abc", (0.3, 0.5, 0.7))}
    safe = check_early_stopping(
        pd.DataFrame({"trial_id": list(agreeing), "status": "FINISHED"}),
        epochs_frame(agreeing),
        Asha(1, 2, 2),
        False,
    )
    assert safe.at_grace.rho == pytest.approx(1.0) and safe.warning() is None


@pytest.mark.parametrize(
    ("grace", "factor", "epochs", "rungs"),
    [(1, 2, 20, (1, 2, 4, 8, 16)), (1, 4, 3, (1,)), (2, 2, 2, ()), (3, 3, 28, (3, 9, 27))],
)
def test_rungs_are_below_the_last_epoch(grace, factor, epochs, rungs):
    assert rung_epochs(grace, factor, epochs) == rungs
