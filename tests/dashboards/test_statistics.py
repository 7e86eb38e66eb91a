"""The report's statistics against scipy and hand-computed values, and the verdicts they lead to
(pure: synthetic tables, no sweep)."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy import stats

from dashboards.comparisons import compare_arms, cutout_comparisons, grid_comparisons, margin_comparisons
from dashboards.early_stopping import SAFE_CORRELATION, check_early_stopping, settings_of, summary_metrics
from dashboards.statistics import mean_interval, paired_comparison, ranks, spearman
from dashboards.sweeps import from_tables
from study.config import Asha, StudyConfig, plan, rung_epochs
from study.layout import RANK_CORRELATION_METRIC, RANK_CORRELATION_TRIALS_METRIC

scores = st.floats(0, 1, allow_nan=False, width=32)
samples = st.lists(scores, min_size=2, max_size=12)


def test_mean_interval_by_hand():
    # mean 2, sample std 1, n 3: half width t(0.975, 2) * 1 / sqrt(3) = 4.302653 / 1.732051
    interval = mean_interval([1.0, 2.0, 3.0])
    assert interval.mean == 2.0 and interval.count == 3
    assert interval.half_width == pytest.approx(4.302652729911275 / math.sqrt(3))
    assert (interval.low, interval.high) == pytest.approx((2 - 2.4841377, 2 + 2.4841377), abs=1e-6)


def test_one_value_has_a_mean_and_no_interval():
    interval = mean_interval([0.7, float("nan")])
    assert interval.mean == 0.7 and interval.count == 1 and not interval.defined


@given(samples)
def test_mean_interval_matches_scipy(values):
    assume(np.std(values) > 1e-6)
    interval = mean_interval(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert (interval.low, interval.high) == pytest.approx((low, high), rel=1e-9, abs=1e-12)
    assert interval.low <= interval.mean <= interval.high


def test_paired_t_on_known_data():
    # differences 1, 2, 3, 6: mean 3, sd sqrt(14/3), t = 3 / (sd / 2) = 2.777, df 3
    a = [10.0, 11.0, 12.0, 13.0]
    b = [11.0, 13.0, 15.0, 19.0]
    result = paired_comparison(a, b)
    assert result.pairs == 4 and result.difference == 3.0
    expected = stats.ttest_rel(b, a)
    assert result.p_value == pytest.approx(expected.pvalue)
    assert result.p_value == pytest.approx(0.0691, abs=5e-4)
    low, high = expected.confidence_interval(0.95)
    assert (result.low, result.high) == pytest.approx((low, high))
    assert result.testable and not result.excludes_zero and result.verdict() == "within noise"


@given(st.lists(st.tuples(scores, scores), min_size=2, max_size=12))
def test_paired_comparison_matches_scipy(pairs):
    a, b = (np.array(side, dtype=float) for side in zip(*pairs))
    assume(np.std(b - a) > 1e-6)
    result = paired_comparison(a, b)
    expected = stats.ttest_rel(b, a)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-12)
    assert (result.low, result.high) == pytest.approx(tuple(expected.confidence_interval(0.95)), rel=1e-6, abs=1e-12)
    assert result.excludes_zero == (expected.pvalue < 0.05), "the 95% interval excludes 0 exactly when p < 0.05"


def test_fewer_than_two_pairs_is_not_testable():
    single = paired_comparison([0.5, float("nan")], [0.6, 0.9])
    assert single.pairs == 1 and single.difference == pytest.approx(0.1)
    assert not single.testable and not single.excludes_zero
    assert single.verdict().startswith("not testable")
    assert not paired_comparison([], []).testable
    with pytest.raises(ValueError, match="same length"):
        paired_comparison([1.0], [1.0, 2.0])


def test_noisy_arms_are_within_noise_and_separated_arms_are_not():
    rng = np.random.default_rng(0)
    base = rng.normal(0.6, 0.05, 5)
    noisy = paired_comparison(base, base + rng.normal(0.0, 0.05, 5))
    assert noisy.testable and noisy.low < 0 < noisy.high and noisy.verdict() == "within noise"
    separated = paired_comparison(base, base + 0.2 + rng.normal(0.0, 0.005, 5))
    assert separated.excludes_zero and separated.low > 0 and separated.p_value < 1e-4 and separated.verdict() == "outside noise"


def test_ranks_average_ties():
    assert list(ranks(np.array([3.0, 1.0, 3.0, 2.0]))) == [3.5, 1.0, 3.5, 2.0]


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=3, max_size=15))
def test_spearman_matches_scipy(pairs):
    x, y = (np.array(side, dtype=float) for side in zip(*pairs))
    assume(len(set(x)) > 1 and len(set(y)) > 1)
    assert spearman(x, y).rho == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-9)


def test_spearman_needs_three_pairs_and_varying_values():
    assert spearman([1, 2, 3], [3, 2, 1]).rho == pytest.approx(-1.0)
    assert not spearman([1, 2, float("nan")], [1, 2, 3]).defined
    assert spearman([1, 2, float("nan")], [1, 2, 3]).count == 2
    assert not spearman([1, 1, 1], [1, 2, 3]).defined


def trials_frame(rows):
    """A tidy trials table: one row per (dataset, family, params, seed, score)."""
    frame = pd.DataFrame(rows)
    frame["trial_id"] = [f"t{index}" for index in range(len(frame))]
    frame["status"] = frame.get("status", "FINISHED")
    frame["status"] = frame["status"].fillna("FINISHED")
    frame["final_knn_top1"] = frame.pop("score")
    return frame


def overlap_rows(gap):
    rng = np.random.default_rng(1)
    rows = []
    for seed in range(4):
        offset = rng.normal(0, 0.05)  # a seed's shared luck: what pairing removes
        for overlap, mean in ((0.2, 0.5), (0.5, 0.5 + gap), (0.8, 0.5)):
            rows.append({"dataset": "digits", "views.family": "overlap", "views.params.overlap": overlap, "seed": seed,
                         "score": mean + offset + rng.normal(0, 0.01)})
    return rows


def test_grid_comparisons_pair_each_point_with_the_best():
    found = grid_comparisons(trials_frame(overlap_rows(gap=0.2)), "Fig. 2a")
    assert [(item.baseline, item.arm) for item in found.comparisons] == [
        ("the best overlap 0.5", "overlap 0.2"), ("the best overlap 0.5", "overlap 0.8")]
    assert all(item.result.pairs == 4 and item.result.excludes_zero and item.result.difference < 0 for item in found.comparisons)
    assert found.summary().startswith("In Fig. 2a, 2 of 2 tested differences are outside noise")
    noisy = grid_comparisons(trials_frame(overlap_rows(gap=0.001)), "Fig. 2a")
    assert noisy.summary() == ("All differences in Fig. 2a are within noise: no point's 95% interval of the paired "
                               "difference to the best excludes 0.")


def test_pairs_are_matched_by_seed_not_by_order():
    a = trials_frame([{"seed": seed, "score": 0.5 + 0.1 * seed} for seed in (0, 1, 2)])
    b = trials_frame([{"seed": seed, "score": 0.51 + 0.1 * seed} for seed in (2, 0, 1, 7)])
    result = compare_arms(a, b)
    assert result.pairs == 3 and result.difference == pytest.approx(0.01) and result.low == pytest.approx(0.01)
    stopped = b.assign(status=["STOPPED", "FINISHED", "FINISHED", "FINISHED"])
    assert compare_arms(a, stopped).pairs == 2, "a trial that did not run every epoch is left out"


def test_cutout_and_margin_comparisons_name_their_arms():
    rows = [{"dataset": "digits", "views.family": "cutout", "views.params.hole": 0.5, "views.params.fill": fill, "seed": 0,
             "score": score} for fill, score in (("zero", 0.4), ("blur", 0.45))]
    (only,) = cutout_comparisons(trials_frame(rows)).comparisons
    assert (only.setting, only.baseline, only.arm, only.result.pairs) == ("digits, cutout size 0.5", "cutout", "cutout-blur", 1)
    assert only.result.difference == pytest.approx(0.05) and "not testable" in only.sentence()
    margins = [{"dataset": "scenes", "views.family": "overlap", "margin.mode": mode, "seed": seed, "score": score + seed / 10}
               for seed in (0, 1) for mode, score in (("none", 0.3), ("fixed", 0.35), ("distance", 0.5))]
    found = margin_comparisons(trials_frame(margins))
    assert [(item.baseline, item.arm) for item in found.comparisons] == [
        ("vanilla", "fixed margin"), ("vanilla", "distance-based margin"), ("fixed margin", "distance-based margin")]
    assert [item.result.difference for item in found.comparisons] == pytest.approx([0.05, 0.2, 0.15])


def epochs_frame(curves):
    return pd.DataFrame([{"trial_id": trial, "epoch": epoch, "knn_top1": score}
                         for trial, curve in curves.items() for epoch, score in enumerate(curve, start=1)])


def test_early_stopping_check_correlates_each_rung_with_the_end():
    curves = {"a": [0.1, 0.2, 0.3, 0.9], "b": [0.2, 0.3, 0.4, 0.8], "c": [0.3, 0.1, 0.5, 0.7], "d": [0.4, 0.5, 0.6, 0.6],
              "stopped": [0.9]}
    trials = pd.DataFrame({"trial_id": list(curves), "status": ["FINISHED"] * 4 + ["STOPPED"]})
    check = check_early_stopping(trials, epochs_frame(curves), Asha(1, 2, 4), on=True)
    assert [rung.epoch for rung in check.rungs] == [1, 2] and check.finished == 4
    assert check.at_grace.rho == pytest.approx(-1.0) and check.at_grace.count == 4
    assert check.rungs[1].correlation.rho == pytest.approx(stats.spearmanr([0.2, 0.3, 0.1, 0.5], [0.9, 0.8, 0.7, 0.6]).statistic)
    assert f"< {SAFE_CORRELATION}" in check.warning()
    assert summary_metrics(check) == {RANK_CORRELATION_TRIALS_METRIC: 4.0, RANK_CORRELATION_METRIC: pytest.approx(-1.0)}
    few = check_early_stopping(trials.iloc[[0, 1, 4]], epochs_frame(curves), Asha(1, 2, 4), on=True)
    assert not few.at_grace.defined and "only 2 trials ran every epoch (needs 3)" in few.warning()
    assert RANK_CORRELATION_METRIC not in summary_metrics(few)
    agreeing = {name: [score / 2, score] for name, score in zip("abc", (0.3, 0.5, 0.7))}
    safe = check_early_stopping(pd.DataFrame({"trial_id": list(agreeing), "status": "FINISHED"}), epochs_frame(agreeing), Asha(1, 2, 2), False)
    assert safe.at_grace.rho == pytest.approx(1.0) and safe.warning() is None


@pytest.mark.parametrize(("grace", "factor", "epochs", "rungs"), [(1, 2, 20, (1, 2, 4, 8, 16)), (1, 4, 3, (1,)), (2, 2, 2, ()), (3, 3, 28, (3, 9, 27))])
def test_rungs_are_below_the_last_epoch(grace, factor, epochs, rungs):
    assert rung_epochs(grace, factor, epochs) == rungs


def test_a_sweep_recorded_before_the_switch_ran_asha():
    sweep = from_tables("old", pd.DataFrame({"trial_id": ["t"], "status": ["FINISHED"], "data.dataset": ["digits"]}),
                        epochs_frame({"t": [0.1, 0.2, 0.3]}), 3, "parquet", state={"config": {"grace_period": 5, "reduction_factor": 3}})
    assert settings_of(sweep) == (Asha(3, 3, 3), True)
    recorded = plan(StudyConfig(space="overlap", grid=True, epochs=3))
    state = {"early_stopping": recorded.early_stopping, "asha": recorded.asha.to_dict()}
    assert settings_of(from_tables("new", sweep.trials, sweep.epochs, 3, "parquet", state=state)) == (Asha(1, 2, 3), False)
