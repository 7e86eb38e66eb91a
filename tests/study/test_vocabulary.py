"""Trial outcomes are written to MLflow and read back by one table (study.vocabulary)."""

import pytest

from study.vocabulary import EPOCH_COLUMNS, SUMMARY_METRICS, TRACKED_METRICS, Outcome


@pytest.mark.parametrize("outcome", list(Outcome))
def test_every_outcome_reads_back_from_its_run(outcome):
    assert Outcome.of_run(outcome.run_status, outcome.stopped_by) is outcome


def test_runs_that_did_not_end_keep_their_status():
    assert Outcome.of_run("RUNNING", None) == "RUNNING"
    assert Outcome.of_run("KILLED", None) == "KILLED", (
        "killed without a stopper is not an ASHA stop"
    )
    assert Outcome.of_run("FAILED", "something-else") is Outcome.FAILED


def test_outcomes_of_results():
    assert Outcome.of_result({"epoch": 3}, 3) is Outcome.FINISHED
    assert Outcome.of_result({"epoch": 2}, 3) is Outcome.STOPPED
    assert Outcome.of_result(None, 3) is Outcome.STOPPED
    assert (
        Outcome.of_result({"epoch": 2, "stop_reason": "diverged: loss nan"}, 3) is Outcome.DIVERGED
    )
    assert (
        Outcome.of_result({"epoch": 3, "stop_reason": "collapsed: z_std"}, 3) is Outcome.COLLAPSED
    )


def test_each_metric_is_named_once():
    assert len(set(TRACKED_METRICS)) == len(TRACKED_METRICS)
    assert set(SUMMARY_METRICS) <= set(TRACKED_METRICS)
    assert EPOCH_COLUMNS[1:] == TRACKED_METRICS
