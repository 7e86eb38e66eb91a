"""The report's paired comparisons: the arms the paper compares, seed by seed.

- Fig. 2a, 2b and 3: at each dataset, every grid point against the best one (the highest mean);
- Fig. 4: each cutout-blur strength against cutout (``views.params.fill`` blur at each
  ``views.params.blur`` vs zero) at each hole size;
- Fig. 5: fixed and distance-based margins against vanilla, and distance against fixed.

Two arms are paired on the ``seed`` column (a seed's trials in one arm are averaged), over the
trials that ran every epoch; each comparison is :func:`~study.statistics.paired_comparison`
of ``b - a`` with a plain sentence, and each figure says in words whether its differences are
within noise (no 95% interval of a paired difference excludes 0).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import combinations

import pandas as pd

from dashboards.series import (
    CUTOUT_ARM,
    DATASET,
    FAMILY,
    FILL_NAMES,
    MARGIN_ARM,
    SCORE,
    MissingData,
    cutout_arms,
    family_trials,
    margin_arms,
    margin_trials,
    repeats,
)
from dashboards.sweeps import SweepData
from study.statistics import MIN_PAIRS, PairedComparison, paired_comparison
from study.vocabulary import Outcome

SEED = "seed"
GRID_FIGURES = {
    # figure: (family, parameter, what a point is called)
    "Fig. 2a": ("overlap", "views.params.overlap", "overlap"),
    "Fig. 2b": ("patch", "views.params.patch", "patch"),
    "Fig. 3": ("exclusive", "views.params.gap", "gap"),
}


@dataclass(frozen=True)
class Comparison:
    """Arm ``arm`` minus arm ``baseline`` in ``setting`` (a dataset, a hole size),
    paired by seed."""

    figure: str
    setting: str
    baseline: str
    arm: str
    result: PairedComparison

    def sentence(self) -> str:
        result = self.result
        if result.pairs == 0:
            return f"{self.setting}: {self.arm} and {self.baseline} share no seed: not testable."
        direction = (
            "higher"
            if result.difference > 0
            else "lower"
            if result.difference < 0
            else "no different"
        )
        amount = (
            f"{abs(result.difference):.4f} {direction} than"
            if result.difference != 0
            else "no different from"
        )
        if not result.testable:
            return (
                f"{self.setting}: {self.arm} scores {amount} {self.baseline} "
                f"on {result.pairs} seed: {result.verdict()}."
            )
        return (
            f"{self.setting}: {self.arm} scores {amount} {self.baseline} over {result.pairs} seeds "
            f"(95% interval of the difference {result.low:+.4f} to {result.high:+.4f}, "
            f"p = {result.p_value:.3g}): {result.verdict()}."
        )


@dataclass(frozen=True)
class FigureComparisons:
    """A figure's comparisons; ``unit`` names what is compared and ``against`` with what;
    ``nothing`` says what the sweep had where it has nothing to compare."""

    figure: str
    unit: str
    against: str
    comparisons: tuple[Comparison, ...]
    nothing: str = ""

    def summary(self) -> str:
        every = self.comparisons
        testable = [item for item in every if item.result.testable]
        outside = [item for item in testable if item.result.excludes_zero]
        if not every:
            return (
                f"{self.figure} has nothing to compare: "
                f"{self.nothing or f'one {self.unit} per dataset'}."
            )
        if not testable:
            return (
                f"No difference in {self.figure} can be tested: "
                f"no comparison has {MIN_PAIRS} matched seeds "
                "(run the grid with more --seeds)."
            )
        untested = len(every) - len(testable)
        tail = (
            f" ({untested} of {len(every)} cannot be tested: fewer than {MIN_PAIRS} matched seeds)"
            if untested
            else ""
        )
        if not outside:
            scope = "All testable differences" if untested else "All differences"
            return (
                f"{scope} in {self.figure} are within noise: "
                f"no {self.unit}'s 95% interval of the paired difference "
                f"{self.against} excludes 0{tail}."
            )
        named = "; ".join(
            f"{item.setting}: {item.arm} vs {item.baseline} ({item.result.difference:+.4f})"
            for item in outside
        )
        return (
            f"In {self.figure}, {len(outside)} of {len(testable)} tested differences "
            "are outside noise "
            f"(their 95% interval excludes 0): {named}{tail}."
        )


def _finished(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[(trials["status"] == Outcome.FINISHED) & trials[SCORE].notna()]


def compare_arms(a: pd.DataFrame, b: pd.DataFrame) -> PairedComparison:
    """``b - a`` of the finished trials' final scores over the seeds both arms have."""
    first, second = (_finished(arm).groupby(SEED)[SCORE].mean() for arm in (a, b))
    paired = pd.concat([first.rename("a"), second.rename("b")], axis=1, join="inner").sort_index()
    return paired_comparison(paired["a"].to_numpy(), paired["b"].to_numpy())


def _value(value: float) -> str:
    return f"{value:g}"


def grid_comparisons(trials: pd.DataFrame, figure: str) -> FigureComparisons:
    """Each point against the dataset's best point (highest mean over its finished trials)."""
    family, param, name = GRID_FIGURES[figure]
    selected = family_trials(trials, family, figure, param)
    found = []
    every = repeats(selected, [DATASET], param)
    for dataset, series in every.items():
        best = series.best[0]
        of_dataset = selected[selected[DATASET] == dataset]
        at = {x: of_dataset[of_dataset[param].astype(float) == x] for x in series.x}
        for x in series.x:
            if x != best:
                found.append(
                    Comparison(
                        figure,
                        str(dataset),
                        f"the best {name} {_value(best)}",
                        f"{name} {_value(x)}",
                        compare_arms(at[best], at[x]),
                    )
                )
    taken = "; ".join(
        f"{dataset}: {name} {', '.join(map(_value, series.x))}" for dataset, series in every.items()
    )
    nothing = (
        f"one {name} per dataset among the trials that ran every epoch ({taken})"
        if every
        else "no trial ran every epoch"
    )
    return FigureComparisons(figure, "point", "to the best", tuple(found), nothing)


def cutout_comparisons(trials: pd.DataFrame) -> FigureComparisons:
    """Fig. 4: each cutout-blur arm (one per blur strength) minus cutout at each dataset
    and hole size."""
    figure, hole = "Fig. 4", "views.params.hole"
    selected, arms = cutout_arms(family_trials(trials, "cutout", figure, hole))
    zero = FILL_NAMES["zero"]
    found, had = [], []
    for (dataset, size), group in selected.groupby([DATASET, hole], sort=True):
        at = {arm: group[group[CUTOUT_ARM] == arm] for arm in arms}
        finished = [arm for arm in arms if not _finished(at[arm]).empty]
        had.append(f"{dataset}, size {_value(size)}: {', '.join(finished) or 'none'}")
        if zero not in finished:
            continue
        for arm in arms:
            if arm != zero and not _finished(at[arm]).empty:
                found.append(
                    Comparison(
                        figure,
                        f"{dataset}, cutout size {_value(size)}",
                        zero,
                        arm,
                        compare_arms(at[zero], at[arm]),
                    )
                )
    nothing = (
        f"no dataset and cutout size has both {zero} and a cutout-blur arm among the trials "
        f"that ran every epoch ({'; '.join(had)})"
    )
    return FigureComparisons(figure, "comparison", "cutout-blur − cutout", tuple(found), nothing)


def margin_comparisons(trials: pd.DataFrame) -> FigureComparisons:
    """Fig. 5: each margin arm against each earlier one (vanilla, fixed, distance) per setting."""
    figure = "Fig. 5"
    selected = margin_trials(trials, figure)
    found, had = [], []
    for (family, dataset), group in selected.groupby([FAMILY, DATASET], sort=True):
        arms = [
            arm
            for arm in margin_arms(group)
            if not _finished(group[group[MARGIN_ARM] == arm]).empty
        ]
        had.append(f"{family} views on {dataset}: {', '.join(arms) or 'none'}")
        for a, b in combinations(arms, 2):
            found.append(
                Comparison(
                    figure,
                    f"{family} views on {dataset}",
                    a,
                    b,
                    compare_arms(group[group[MARGIN_ARM] == a], group[group[MARGIN_ARM] == b]),
                )
            )
    nothing = (
        f"no setting has two margin arms among the trials that ran every epoch ({'; '.join(had)})"
    )
    return FigureComparisons(figure, "comparison", "between the margins", tuple(found), nothing)


FIGURES: dict[str, Callable[[pd.DataFrame], FigureComparisons]] = {
    **{
        figure: (lambda trials, figure=figure: grid_comparisons(trials, figure))
        for figure in GRID_FIGURES
    },
    "Fig. 4": cutout_comparisons,
    "Fig. 5": margin_comparisons,
}


def sweep_comparisons(
    sweep: SweepData,
) -> Iterator[tuple[str, FigureComparisons | MissingData]]:
    """Each figure's comparisons, or why the sweep has none for it."""
    for figure, compare in FIGURES.items():
        try:
            yield figure, compare(sweep.trials)
        except MissingData as reason:
            yield figure, reason


def _number(value: float, text: str) -> str:
    return "–" if value != value else text.format(value)


def _interval(result: PairedComparison) -> str:
    return "–" if result.low != result.low else f"{result.low:+.4f} to {result.high:+.4f}"


def _table(found: FigureComparisons) -> str:
    rows = "".join(
        f'<tr class="comparison" data-figure="{html.escape(item.figure)}" '
        f'data-setting="{html.escape(item.setting)}" '
        f'data-arm="{html.escape(item.arm)}" data-baseline="{html.escape(item.baseline)}">'
        f"<td>{html.escape(item.setting)}</td><td>{html.escape(item.arm)}</td>"
        f"<td>{html.escape(item.baseline)}</td>"
        f"<td>{item.result.pairs}</td><td>{_number(item.result.difference, '{:+.4f}')}</td>"
        f"<td>{_interval(item.result)}</td>"
        f"<td>{_number(item.result.p_value, '{:.3g}')}</td>"
        f"<td>{html.escape(item.sentence())}</td></tr>"
        for item in found.comparisons
    )
    header = "".join(
        f"<th>{name}</th>"
        for name in (
            "setting",
            "arm",
            "against",
            "seeds",
            "difference",
            "95% interval",
            "p",
            "in words",
        )
    )
    return f"<table><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>" if rows else ""


def comparisons_html(sweep: SweepData) -> str:
    """The report's section: per figure, a sentence on noise and the table of paired differences."""
    parts, absent = [], []
    for figure, found in sweep_comparisons(sweep):
        if isinstance(found, MissingData):
            absent.append(f"{figure} ({found.short})")
            continue
        parts.append(
            f'<h3>{html.escape(figure)}</h3><p class="verdict" data-figure="{html.escape(figure)}">'
            f"{html.escape(found.summary())}</p>{_table(found)}"
        )
    intro = (
        "<p>Differences of the final knn_top1 between the arms each figure compares, "
        "paired by seed over the trials that ran every epoch: the mean difference, "
        "its 95% t-interval and the paired t-test's p-value.</p>"
    )
    missing = (
        f"<p>Not compared for this sweep: {html.escape(', '.join(absent))}.</p>" if absent else ""
    )
    return intro + "".join(parts) + missing
