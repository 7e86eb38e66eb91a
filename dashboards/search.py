"""What the sweep's Optuna study says: parameter importances and a parallel-coordinates view.

Both read the searcher's own study (``STORAGE/NAME/optuna.db``), where ASHA-stopped trials are
PRUNED with their per-epoch intermediate values and finished trials are COMPLETE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from matplotlib import colormaps
from matplotlib.figure import Figure

from dashboards.figures import STOPPED_COLOUR, new_figure
from dashboards.series import MissingData
from dashboards.sweeps import SweepData
from study.vocabulary import KNN_TOP1

SEED_PARAM = "seed"


def load_study(sweep: SweepData) -> optuna.Study:
    if sweep.optuna_storage is None:
        raise MissingData(
            "search figures need the sweep's Optuna study "
            f"(optuna.db in {sweep.directory}); it was not found",
            "no Optuna study",
        )
    return optuna.load_study(study_name=sweep.name, storage=sweep.optuna_storage)


def describe_distribution(distribution: optuna.distributions.BaseDistribution) -> str:
    """``float in [0.1, 0.9]``, ``float in [0.0001, 0.1], log``, ``one of ['zero', 'blur']``."""
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return f"one of {list(distribution.choices)}"
    kind = "int" if isinstance(distribution, optuna.distributions.IntDistribution) else "float"
    step = (
        f", step {distribution.step:g}"
        if getattr(distribution, "step", None) not in (None, 1)
        else ""
    )
    return (
        f"{kind} in [{distribution.low:g}, {distribution.high:g}]"
        + (", log" if distribution.log else "")
        + step
    )


def searched_space(study: optuna.Study) -> dict[str, str]:
    """Each param the searcher drew, as it drew it (conditional params appear in some
    trials only)."""
    space: dict[str, str] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, distribution in trial.distributions.items():
            space.setdefault(name, describe_distribution(distribution))
    return space


def completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def varied_params(trials: list[optuna.trial.FrozenTrial]) -> list[str]:
    """Params that take more than one value across ``trials``, in order of first appearance."""
    values: dict[str, set] = {}
    for trial in trials:
        for name, value in trial.params.items():
            values.setdefault(name, set()).add(repr(value))
    return [name for name, seen in values.items() if len(seen) > 1]


def _states(study: optuna.Study) -> str:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    return ", ".join(f"{count} {state}" for state, count in counts.items()) or "no trial"


def _count(count: int) -> str:
    return {0: "no", 1: "one"}[count]


def param_importances(study: optuna.Study, seed: int = 0) -> dict[str, float]:
    """fANOVA importances of the varied params over the completed trials.

    MissingData where they cannot say anything: fewer than two params varied (one param's
    importance is 1.00 by definition), no more distinct configurations than params (their
    effects cannot be told apart), or every trial scored the same."""
    trials = completed(study)
    params = varied_params(trials)
    study_name = study.study_name
    if len(trials) < 2 or not params:
        raise MissingData(
            "parameter importance needs at least 2 completed trials that differ in a parameter; "
            f"study {study_name} has {len(trials)} completed trials ({_states(study)}) "
            f"varying {params or 'no parameter'}",
            "no parameter varied" if len(trials) > 1 else f"{_count(len(trials))} completed trial",
        )
    if len(params) == 1:
        searched = [other for other in searched_space(study) if other not in params]
        constant = f"; {searched} took one value" if searched else ""
        raise MissingData(
            f"one parameter varied over the {len(trials)} completed trials of study {study_name} "
            f"({params[0]}{constant}): its importance is 1.00 by definition",
            "one parameter searched",
        )
    settings = {tuple(repr(trial.params.get(param)) for param in params) for trial in trials}
    if len(settings) <= len(params):
        raise MissingData(
            f"fANOVA cannot tell the effects of {len(params)} parameters ({', '.join(params)}) "
            f"apart: the {len(trials)} completed trials of study {study_name} have "
            f"{len(settings)} distinct configurations, it needs at least {len(params) + 1}",
            f"{len(settings)} configurations for {len(params)} parameters",
        )
    if len({trial.value for trial in trials}) < 2:
        raise MissingData(
            "parameter importance needs completed trials that score differently; "
            f"all {len(trials)} of study {study_name} scored {trials[0].value:.4f}",
            "every trial scored the same",
        )
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    return optuna.importance.get_param_importances(study, evaluator=evaluator, params=params)


def importance_figure(study: optuna.Study) -> Figure:
    importances = param_importances(study)
    names = list(importances)[::-1]
    figure, (axes,) = new_figure(height=max(2.4, 0.5 * len(names) + 1.4))
    bars = axes.barh(
        names, [importances[name] for name in names], color="#1f77b4", gid="importance"
    )
    axes.bar_label(bars, [f"{importances[name]:.2f}" for name in names], fontsize=8, padding=2)
    axes.set(
        xlabel="fANOVA importance for knn_top1",
        ylabel="parameter",
        title=f"Parameter importance ({len(completed(study))} completed trials)",
    )
    axes.set_xlim(0, 1.1)
    return figure


@dataclass(frozen=True)
class Axis:
    """One vertical axis of the parallel-coordinates plot: values mapped into [0, 1]."""

    name: str
    ticks: list[tuple[float, str]]
    position: dict[str, float] | None  # categorical values -> position; None for numbers
    low: float = 0.0
    high: float = 1.0

    def place(self, value: Any) -> float:
        if self.position is not None:
            return self.position[repr(value)]
        return 0.5 if self.high == self.low else (float(value) - self.low) / (self.high - self.low)


def make_axis(name: str, values: list[Any]) -> Axis:
    if all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in values):
        low, high = float(min(values)), float(max(values))
        return Axis(
            name,
            [(0.0, f"{low:.3g}"), (1.0, f"{high:.3g}")] if high > low else [(0.5, f"{low:.3g}")],
            None,
            low,
            high,
        )
    categories = sorted({repr(value) for value in values})
    step = 1 / max(len(categories) - 1, 1)
    position = {category: index * step for index, category in enumerate(categories)}
    return Axis(
        name, [(place, category.strip("'")) for category, place in position.items()], position
    )


def parallel_coordinates_figure(study: optuna.Study) -> Figure:
    """One line per trial through its params and its score; pruned (ASHA-stopped) trials grey at
    their last intermediate score."""
    trials = [
        trial
        for trial in study.get_trials(deepcopy=False)
        if trial.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    ]
    scored = [
        (trial, trial.value if trial.value is not None else _last_intermediate(trial))
        for trial in trials
    ]
    scored = [(trial, score) for trial, score in scored if score is not None]
    varied = varied_params([trial for trial, _ in scored])
    params = [name for name in varied if name != SEED_PARAM]
    study_name = study.study_name
    if len(scored) < 2:
        raise MissingData(
            "the parallel-coordinates view compares scored trials; "
            f"study {study_name} has {len(scored)} ({_states(study)})",
            f"{_count(len(scored))} scored trial",
        )
    if not params:
        raise MissingData(
            "the parallel-coordinates view needs scored trials that differ in a searched "
            f"parameter; the {len(scored)} scored trials of study {study_name} "
            + ("differ only in the seed" if varied else "share one configuration"),
            "only the seed varied" if varied else "one configuration",
        )
    if len({score for _, score in scored}) < 2:
        raise MissingData(
            "the parallel-coordinates view relates the parameters to the score; "
            f"all {len(scored)} scored trials of study {study_name} scored {scored[0][1]:.4f}",
            "every trial scored the same",
        )
    axes_spec = [
        make_axis(name, [trial.params[name] for trial, _ in scored if name in trial.params])
        for name in params
    ]
    axes_spec.append(make_axis(KNN_TOP1, [score for _, score in scored]))
    figure, (axes,) = new_figure(width=max(6.4, 1.8 * len(axes_spec)))
    colour_map = colormaps["viridis"]
    score_axis = axes_spec[-1]
    for trial, score in sorted(scored, key=lambda item: item[1]):
        points = [
            (index, spec.place(trial.params[spec.name]))
            for index, spec in enumerate(axes_spec[:-1])
            if spec.name in trial.params
        ]
        points.append((len(axes_spec) - 1, score_axis.place(score)))
        xs, ys = zip(*points)
        pruned = trial.state == optuna.trial.TrialState.PRUNED
        colour = STOPPED_COLOUR if pruned else colour_map(score_axis.place(score))
        axes.plot(
            xs,
            ys,
            color=colour,
            linestyle="--" if pruned else "-",
            alpha=0.8,
            marker="o",
            markersize=3,
            gid=f"trial:{trial.number}",
        )
    for index, spec in enumerate(axes_spec):
        axes.axvline(index, color="0.2", linewidth=0.8)
        for place, text in spec.ticks:
            axes.annotate(
                text,
                (index, place),
                textcoords="offset points",
                xytext=(4, 0),
                fontsize=7,
                va="center",
            )
    axes.set_xticks(
        range(len(axes_spec)),
        [spec.name.removeprefix("views.params.") for spec in axes_spec],
        fontsize=8,
    )
    axes.set_yticks([])
    axes.set_xlim(-0.2, len(axes_spec) - 0.6)
    axes.set(
        ylabel="value (scaled per axis)",
        title=f"Parallel coordinates of {len(scored)} trials (grey, dashed: stopped by ASHA)",
    )
    return figure


def _last_intermediate(trial: optuna.trial.FrozenTrial) -> float | None:
    if not trial.intermediate_values:
        return None
    value = trial.intermediate_values[max(trial.intermediate_values)]
    return None if value is None or not np.isfinite(value) else float(value)
