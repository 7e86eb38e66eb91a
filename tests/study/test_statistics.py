"""The statistics the report quotes against scipy and hand-computed values (pure, no sweep)."""

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy import stats

from study.statistics import mean_interval, paired_comparison, ranks, spearman

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
    low, high = stats.t.interval(
        0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values)
    )
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
    assert (result.low, result.high) == pytest.approx(
        tuple(expected.confidence_interval(0.95)), rel=1e-6, abs=1e-12
    )
    assert result.excludes_zero == (expected.pvalue < 0.05), (
        "the 95% interval excludes 0 exactly when p < 0.05"
    )


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
    assert (
        separated.excludes_zero
        and separated.low > 0
        and separated.p_value < 1e-4
        and separated.verdict() == "outside noise"
    )


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
