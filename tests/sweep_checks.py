"""Checks that hold for every real sweep, shared by the tests of the sweeps that run them."""

import optuna
import pytest
from optuna.trial import TrialState

OVERLAP = "views.params.overlap"


def assert_optuna_mirrors_the_trials(study: optuna.Study, rows: list[dict]) -> None:
    """The sweep's Optuna study against its Parquet rows (``trials.parquet``), trials matched by
    their overlap: one ASHA stopped is PRUNED at the last epoch it ran; any other is COMPLETE,
    with its final kNN top-1 as its value."""
    by_overlap = {round(trial.params[OVERLAP], 10): trial for trial in study.trials}
    for row in rows:
        trial = by_overlap[round(row[f"param.{OVERLAP}"], 10)]
        if row["status"] == "STOPPED":
            assert trial.state == TrialState.PRUNED, row["trial_id"]
            assert max(trial.intermediate_values) == row["epochs_run"], row["trial_id"]
        else:
            assert trial.state == TrialState.COMPLETE, row["trial_id"]
            assert trial.value == pytest.approx(row["final_knn_top1"]), row["trial_id"]
