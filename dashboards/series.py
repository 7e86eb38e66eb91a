"""What the paper's figures plot, computed from :class:`~dashboards.sweeps.SweepData`'s tidy
tables without drawing anything (tested against the runs directly; :mod:`dashboards.figures`
draws it, :mod:`dashboards.comparisons` tests it).

Scores are each trial's final ``knn_top1``. A point of a figure is the mean over its seed
repeats among the trials that ran every epoch, with its 95% Student-t interval
(:func:`study.statistics.mean_interval`). A figure whose data is not in the sweep raises
:class:`MissingData` with a message naming what is missing and what the sweep has; so does one
whose data cannot say anything (a curve through one value, a comparison of one arm).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dashboards.sweeps import SweepData
from study.statistics import mean_interval
from study.vocabulary import EPOCH, FINAL_SCORE, KNN_TOP1, Outcome

SCORE = FINAL_SCORE
FAMILY = "views.family"
DATASET = "dataset"
FILL_NAMES = {"zero": "cutout", "blur": "cutout-blur"}
FILL = "views.params.fill"
BLUR = "views.params.blur"
CUTOUT_ARM = "cutout.arm"
MARGIN_NAMES = {"none": "vanilla", "fixed": "fixed margin", "distance": "distance-based margin"}
MARGIN_ARM = "margin.arm"
"""The column naming a trial's margin arm: its mode, and its ``m`` or ``k`` where one mode has
several arms (the paper's distance arm ``k=1`` beside one matched to the fixed margin's size)."""
MARGIN_VALUES = {"fixed": "margin.m", "distance": "margin.k"}


class MissingData(ValueError):
    """A figure not drawn: the sweep has no data for it, or its data cannot say anything (one
    parameter's importance, a comparison of one arm). The message says what is needed and what
    the sweep has; ``short`` says it in a few words (``one parameter varied``), for listings."""

    def __init__(self, message: str, short: str = "no data") -> None:
        super().__init__(message)
        self.short = short


@dataclass(frozen=True)
class Series:
    """The mean score at each x over repeats (``count`` trials each), its 95% t-interval
    ``low``–``high`` (NaN at a single trial) and sample std."""

    label: str
    x: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    count: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @property
    def yerr(self) -> np.ndarray | None:
        """The interval as error bar lengths below and above the mean; None without repeats."""
        return (
            np.array([self.mean - self.low, self.high - self.mean])
            if (self.count > 1).any()
            else None
        )

    @property
    def best(self) -> tuple[float, float]:
        index = int(np.nanargmax(self.mean))
        return float(self.x[index]), float(self.mean[index])


def _present(trials: pd.DataFrame, column: str) -> list[Any]:
    return sorted(trials[column].dropna().unique().tolist()) if column in trials else []


def family_trials(
    trials: pd.DataFrame, family: str, figure: str, param: str | None = None
) -> pd.DataFrame:
    """The trials of one view family (with ``param`` set); MissingData if there are none."""
    selected = trials[trials[FAMILY] == family] if FAMILY in trials else trials.iloc[:0]
    if param is not None and not selected.empty:
        selected = selected[selected[param].notna()] if param in selected else selected.iloc[:0]
    if selected.empty:
        raise MissingData(
            f"{figure} needs trials of the {family!r} view family; "
            f"this sweep has families {_present(trials, FAMILY) or 'none'}",
            f"no {family} trials",
        )
    return selected


def repeats(trials: pd.DataFrame, by: Sequence[str], x: str) -> dict[Any, Series]:
    """Per group of ``by`` (one series each), the finished trials' score at each ``x``."""
    finished = trials[(trials["status"] == Outcome.FINISHED) & trials[SCORE].notna()]
    series = {}
    for key, group in finished.groupby(list(by), sort=True):
        stats = interval_table(group, x, SCORE)
        label = key[0] if len(by) == 1 else key
        series[label] = Series(
            str(label),
            stats.index.to_numpy(dtype=float),
            stats["mean"].to_numpy(),
            stats["std"].to_numpy(),
            stats["count"].to_numpy(),
            stats["low"].to_numpy(),
            stats["high"].to_numpy(),
        )
    return series


def interval_table(rows: pd.DataFrame, by: str, value: str) -> pd.DataFrame:
    """Per value of ``by`` (sorted), mean, std (0 at one row), count and the 95% t-interval
    low/high of ``value``."""
    table = {}
    for key, values in rows.groupby(by, sort=True)[value]:
        interval = mean_interval(values.to_numpy())
        spread = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        table[key] = {
            "mean": interval.mean,
            "std": spread,
            "count": interval.count,
            "low": interval.low,
            "high": interval.high,
        }
    return pd.DataFrame.from_dict(
        table, orient="index", columns=["mean", "std", "count", "low", "high"]
    ).sort_index()


def stopped_trials(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[(trials["status"] == Outcome.STOPPED) & trials[SCORE].notna()]


def no_finished(figure_name: str, trials: pd.DataFrame) -> MissingData:
    counts = trials["status"].value_counts().to_dict()
    return MissingData(
        f"{figure_name} needs trials that ran every epoch; "
        f"this sweep's {len(trials)} such trials are {counts}",
        "no finished trials",
    )


@dataclass(frozen=True)
class BestOf:
    """The best setting of one family on one dataset."""

    dataset: str
    family: str
    value: float
    mean: float
    std: float
    count: int
    low: float = float("nan")
    high: float = float("nan")

    @property
    def yerr(self) -> tuple[float, float]:
        """The 95% t-interval as error bar lengths (none at a single trial)."""
        return (
            (self.mean - self.low, self.high - self.mean)
            if self.count > 1
            else (float("nan"), float("nan"))
        )


def best_settings(sweep: SweepData, families: dict[str, str], figure_name: str) -> list[BestOf]:
    """Per dataset and family (``{family: param}``), the parameter value with the best mean."""
    best = []
    for family, param in families.items():
        trials = family_trials(sweep.trials, family, figure_name, param)
        for dataset, series in repeats(trials, [DATASET], param).items():
            index = int(np.nanargmax(series.mean))
            best.append(
                BestOf(
                    dataset,
                    family,
                    float(series.x[index]),
                    float(series.mean[index]),
                    float(series.std[index]),
                    int(series.count[index]),
                    float(series.low[index]),
                    float(series.high[index]),
                )
            )
    if not best:
        raise no_finished(figure_name, sweep.trials)
    return best


def epoch_curves(
    sweep: SweepData, by: str, trials: pd.DataFrame | None = None
) -> dict[Any, pd.DataFrame]:
    """Per value of ``by``, mean/std/count and 95% t-interval low/high of ``knn_top1`` at each
    epoch over the finished trials."""
    trials = sweep.trials if trials is None else trials
    finished = trials[trials["status"] == Outcome.FINISHED][["trial_id", by]]
    history = sweep.epochs.dropna(subset=[KNN_TOP1]).merge(finished, on="trial_id")
    return {
        key: interval_table(group, EPOCH, KNN_TOP1) for key, group in history.groupby(by, sort=True)
    }


def settings_of(trials: pd.DataFrame) -> list[tuple[str, str]]:
    return sorted(set(zip(trials[FAMILY], trials[DATASET])))


def margin_trials(trials: pd.DataFrame, figure_name: str) -> pd.DataFrame:
    """The trials comparable with the margin trials: those of the same view family and dataset
    (a report drawing other sweeps too has vanilla trials of other families)."""
    with_margin = (
        trials[trials["margin.mode"].fillna("none") != "none"]
        if "margin.mode" in trials
        else trials.iloc[:0]
    )
    settings = set(settings_of(with_margin))
    comparable = trials[[pair in settings for pair in zip(trials[FAMILY], trials[DATASET])]]
    modes = _present(comparable, "margin.mode")
    if len(modes) < 2:
        raise MissingData(
            f"{figure_name} needs trials of at least two margin modes of {list(MARGIN_NAMES)} "
            "on the same views and dataset; "
            f"this sweep has {_present(trials, 'margin.mode') or 'none'}",
            "fewer than two margin modes",
        )
    return comparable.assign(**{MARGIN_ARM: margin_arm_labels(comparable)})


def _margin_arm_key(row: pd.Series) -> tuple[int, float]:
    mode = row.get("margin.mode")
    mode = "none" if not isinstance(mode, str) else mode
    value = row.get(MARGIN_VALUES.get(mode, ""), np.nan)
    return list(MARGIN_NAMES).index(mode), float(value) if _is_set(value) else np.nan


def margin_arm_labels(trials: pd.DataFrame) -> list[str]:
    """Each trial's margin arm: ``fixed margin``, or ``distance-based margin k=1.9`` where the
    mode has trials at more than one ``m`` or ``k``."""
    keys = [_margin_arm_key(row) for _, row in trials.iterrows()]
    values_per_mode: dict[int, set[float]] = {}
    for mode_index, value in keys:
        values_per_mode.setdefault(mode_index, set()).add(value)
    labels = []
    for mode_index, value in keys:
        mode = list(MARGIN_NAMES)[mode_index]
        several = len(values_per_mode[mode_index]) > 1
        parameter = MARGIN_VALUES.get(mode, "").removeprefix("margin.")
        labels.append(
            f"{MARGIN_NAMES[mode]} {parameter}={value:.4g}" if several else MARGIN_NAMES[mode]
        )
    return labels


def margin_arms(trials: pd.DataFrame) -> list[str]:
    """The arms of :func:`margin_trials`' trials in the paper's order: vanilla, fixed, distance,
    each by increasing ``m`` or ``k``."""
    order = sorted(
        zip((_margin_arm_key(row) for _, row in trials.iterrows()), trials[MARGIN_ARM]),
        key=lambda item: (item[0][0], item[0][1]),
    )
    return list(dict.fromkeys(label for _, label in order))


def cutout_arm(fill: str, blur: Any) -> str:
    """``cutout``, ``cutout-blur 0.5``; plain ``cutout-blur`` for a trial recorded without
    a strength."""
    return (
        f"{FILL_NAMES[fill]} {float(blur):g}"
        if fill == "blur" and _is_set(blur)
        else FILL_NAMES[fill]
    )


def cutout_arms(trials: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The cutout trials with a zero or blur fill, with a ``CUTOUT_ARM`` column naming what each
    trained (:func:`cutout_arm`), and the arms found: cutout first, then by blur strength."""
    filled = trials[trials[FILL].isin(list(FILL_NAMES))] if FILL in trials else trials.iloc[:0]
    blurs = filled[BLUR] if BLUR in filled else pd.Series(np.nan, index=filled.index)
    order = {}
    for fill, blur in zip(filled[FILL], blurs):
        order[cutout_arm(fill, blur)] = (
            fill == "blur",
            float(blur) if fill == "blur" and _is_set(blur) else -1.0,
        )
    with_arms = filled.assign(
        **{CUTOUT_ARM: [cutout_arm(fill, blur) for fill, blur in zip(filled[FILL], blurs)]}
    )
    return with_arms, sorted(order, key=order.__getitem__)


def view_setting_labels(trials: pd.DataFrame) -> list[str]:
    """``overlap 0.3``, ``cutout hole=0.3 fill=blur``: the family and its searched parameters."""
    params = [column for column in trials.columns if column.startswith("views.params.")]
    labels = []
    for _, row in trials.iterrows():
        values = [
            f"{column.removeprefix('views.params.')}={_short(row[column])}"
            for column in params
            if _is_set(row[column])
        ]
        margin = row.get("margin.mode")
        if _is_set(margin) and margin != "none":
            values.append(f"margin={margin}")
        labels.append(f"{row[FAMILY]}: {' '.join(values)}" if values else str(row[FAMILY]))
    return labels


def _is_set(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value))


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
