"""The statistics the figures and the report quote: pure functions returning frozen records.

- :func:`mean_interval`: a sample's mean and its two-sided Student-t interval (95% by default);
- :func:`paired_comparison`: two arms over matched seeds: the mean of the paired differences
  ``b - a``, its t-interval and the paired t-test's two-sided p-value; fewer than 2 pairs is
  *not testable* (no variance to estimate);
- :func:`spearman`: Spearman's rank correlation (average ranks for ties); fewer than 3 pairs,
  or a constant side, has none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
MIN_PAIRS = 2
MIN_RANKED = 3


@dataclass(frozen=True)
class Interval:
    """A sample's mean and t-interval; ``low``/``high`` are NaN with fewer than 2 values."""

    mean: float
    low: float
    high: float
    count: int
    level: float = LEVEL

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    @property
    def defined(self) -> bool:
        return not math.isnan(self.low)


@dataclass(frozen=True)
class PairedComparison:
    """Arm b minus arm a over ``pairs`` matched seeds."""

    pairs: int
    difference: float
    low: float
    high: float
    p_value: float
    level: float = LEVEL

    @property
    def testable(self) -> bool:
        return self.pairs >= MIN_PAIRS and not math.isnan(self.p_value)

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval of the difference excludes 0 (a difference outside noise)."""
        return self.testable and (self.low > 0 or self.high < 0)

    def verdict(self) -> str:
        if not self.testable:
            seeds = "seed" if self.pairs == 1 else "seeds"
            return f"not testable ({self.pairs} matched {seeds}; needs {MIN_PAIRS})"
        return "outside noise" if self.excludes_zero else "within noise"


@dataclass(frozen=True)
class Correlation:
    """Spearman's rho over ``count`` pairs; ``rho`` is NaN when it cannot be computed."""

    rho: float
    count: int

    @property
    def defined(self) -> bool:
        return not math.isnan(self.rho)


def _values(sample: Sequence[float]) -> np.ndarray:
    values = np.asarray(sample, dtype=float)
    return values[~np.isnan(values)]


def mean_interval(sample: Sequence[float], level: float = LEVEL) -> Interval:
    """Mean ± t(level, n-1) · s/√n of the sample's non-NaN values."""
    values = _values(sample)
    count = len(values)
    if count == 0:
        return Interval(math.nan, math.nan, math.nan, 0, level)
    mean = float(values.mean())
    if count < 2:
        return Interval(mean, math.nan, math.nan, count, level)
    half = float(stats.t.ppf((1 + level) / 2, count - 1) * values.std(ddof=1) / math.sqrt(count))
    return Interval(mean, mean - half, mean + half, count, level)


def paired_comparison(
    a: Sequence[float], b: Sequence[float], level: float = LEVEL
) -> PairedComparison:
    """``b - a`` over pairs (``a[i]`` and ``b[i]`` share a seed; pairs with a NaN are dropped)."""
    first, second = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if first.shape != second.shape:
        raise ValueError(f"paired samples need the same length; got {len(first)} and {len(second)}")
    keep = ~(np.isnan(first) | np.isnan(second))
    differences = second[keep] - first[keep]
    pairs = len(differences)
    if pairs == 0:
        return PairedComparison(0, math.nan, math.nan, math.nan, math.nan, level)
    interval = mean_interval(differences, level)
    if pairs < MIN_PAIRS:
        return PairedComparison(pairs, interval.mean, math.nan, math.nan, math.nan, level)
    spread = float(differences.std(ddof=1))
    if spread == 0:  # every seed moved by the same amount: no noise to test against
        p_value = 1.0 if interval.mean == 0 else 0.0
        return PairedComparison(pairs, interval.mean, interval.mean, interval.mean, p_value, level)
    statistic = interval.mean / (spread / math.sqrt(pairs))
    p_value = float(2 * stats.t.sf(abs(statistic), pairs - 1))
    return PairedComparison(pairs, interval.mean, interval.low, interval.high, p_value, level)


def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given the average of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    ranked = np.empty(len(values), dtype=float)
    ranked[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranked[tied] = ranked[tied].mean()
    return ranked


def spearman(x: Sequence[float], y: Sequence[float]) -> Correlation:
    """Spearman's rank correlation of the pairs without a NaN: Pearson's r of their ranks."""
    first, second = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if first.shape != second.shape:
        raise ValueError(
            f"correlated samples need the same length; got {len(first)} and {len(second)}"
        )
    keep = ~(np.isnan(first) | np.isnan(second))
    first, second = first[keep], second[keep]
    count = len(first)
    if count < MIN_RANKED:
        return Correlation(math.nan, count)
    rank_x, rank_y = ranks(first) - (count + 1) / 2, ranks(second) - (count + 1) / 2
    scale = math.sqrt(float((rank_x**2).sum() * (rank_y**2).sum()))
    if scale == 0:
        return Correlation(math.nan, count)
    return Correlation(float(np.clip((rank_x * rank_y).sum() / scale, -1.0, 1.0)), count)
