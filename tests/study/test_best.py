"""The one definition of a sweep's best trial (study.best)."""

import math

from hypothesis import given
from hypothesis import strategies as st

from study.best import FALLBACK_RULE, FINISHED_RULE, BestTrial, best_trial
from study.vocabulary import Outcome


def row(trial_id, status, final, best):
    return {"trial_id": trial_id, "status": status, "final_knn_top1": final, "best_knn_top1": best}


def test_the_best_is_the_highest_final_score_of_the_trials_that_ran_every_epoch():
    rows = [
        row("stopped-high", Outcome.STOPPED, 0.91, 0.95),  # ASHA stopped it: never compared
        row(
            "finished-peaked", Outcome.FINISHED, 0.70, 0.90
        ),  # a peak it did not keep is not its result
        row("finished-best", Outcome.FINISHED, 0.80, 0.81),
        row("diverged", Outcome.DIVERGED, None, 0.99),
    ]
    best = best_trial(rows)
    assert best == BestTrial("finished-best", 0.80, ran_every_epoch=True)
    assert best.rule == FINISHED_RULE


def test_the_best_epoch_of_any_trial_only_when_none_ran_every_epoch_and_it_says_so():
    rows = [
        row("a", Outcome.STOPPED, 0.5, 0.6),
        row("b", Outcome.FAILED, None, 0.7),
        row("c", "STOPPED", 0.4, None),
    ]
    best = best_trial(rows)
    assert best == BestTrial("b", 0.7, ran_every_epoch=False)
    assert best.rule == FALLBACK_RULE


def test_no_score_no_best():
    assert best_trial([]) is None
    assert (
        best_trial(
            [row("a", Outcome.FAILED, None, None), row("b", Outcome.FINISHED, math.nan, math.nan)]
        )
        is None
    )


def test_a_record_reads_back():
    best = BestTrial("t", 0.5, ran_every_epoch=False)
    assert BestTrial.from_dict(best.to_dict()) == best


scores = st.one_of(st.none(), st.floats(0, 1))


@given(st.lists(st.tuples(st.sampled_from(list(Outcome)), scores, scores), max_size=12))
def test_the_best_beats_every_comparable_trial(trials):
    rows = [
        row(str(index), status, final, best) for index, (status, final, best) in enumerate(trials)
    ]
    best = best_trial(rows)
    finished = [
        r["final_knn_top1"]
        for r in rows
        if r["status"] == Outcome.FINISHED and r["final_knn_top1"] is not None
    ]
    reached = [r["best_knn_top1"] for r in rows if r["best_knn_top1"] is not None]
    if finished:
        assert best.ran_every_epoch and best.knn_top1 == max(finished)
        assert rows[int(best.trial_id)]["status"] == Outcome.FINISHED
    elif reached:
        assert not best.ran_every_epoch and best.knn_top1 == max(reached)
    else:
        assert best is None
