"""The paper's figures and a sweep's diagnostics, drawn on a :class:`~matplotlib.figure.Figure`
(Agg canvas, no pyplot) from what :mod:`dashboards.series` computes.

Each figure averages the trials that ran every epoch over their seed repeats (mean and 95%
t-interval, drawn only where there are repeats) and shows trials that ASHA stopped early as grey
crosses at their last score. Every kNN figure draws the sweep's baselines (untrained encoder,
raw pixels) as horizontal reference lines (:func:`draw_baselines`). Drawn artists carry gids
(``mean:<series>``, ``ci:<series>``, ``best:<series>``, ``stopped:<series>``, ``trial:<id>``,
``baseline:untrained``, ``baseline:pixels``) so tests can find them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dashboards.series import (
    CUTOUT_ARM,
    DATASET,
    MARGIN_ARM,
    SCORE,
    MissingData,
    Series,
    best_settings,
    cutout_arms,
    epoch_curves,
    family_trials,
    margin_arms,
    margin_trials,
    no_finished,
    repeats,
    settings_of,
    stopped_trials,
    view_setting_labels,
)
from dashboards.sweeps import SweepData
from study.vocabulary import EPOCH, KNN_TOP1, Outcome
from trainables.baselines import BASELINE_LABELS, PIXELS, UNTRAINED, Baselines

DPI = 130
SCORE_LABEL = "kNN top-1 accuracy"
STATUS_STYLES = {
    Outcome.FINISHED: ("-", "o"),
    Outcome.STOPPED: ("--", "x"),
    Outcome.FAILED: (":", "v"),
}
STOPPED_COLOUR = "0.55"
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
BASELINE_STYLES = {UNTRAINED: ("0.15", "-."), PIXELS: ("#bcbd22", (0, (2, 2)))}


def new_figure(
    width: float = 6.4, height: float = 4.2, ncols: int = 1
) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(width * ncols, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, list(np.atleast_1d(figure.subplots(1, ncols)))


def draw_series(axes: Axes, series: Series, colour: str) -> None:
    has_repeats = series.yerr is not None
    container = axes.errorbar(
        series.x,
        series.mean,
        yerr=series.yerr,
        color=colour,
        marker="o",
        capsize=3,
        label=f"{series.label} ({_repeat_counts(series.count)} per point, 95% t-interval)"
        if has_repeats
        else series.label,
    )
    container.lines[0].set_gid(f"mean:{series.label}")
    if has_repeats:
        container.lines[2][0].set_gid(f"ci:{series.label}")
    best_x, best_y = series.best
    axes.plot(
        [best_x],
        [best_y],
        marker="*",
        markersize=16,
        color=colour,
        markeredgecolor="black",
        linestyle="none",
        gid=f"best:{series.label}",
    )
    right_half = best_x > (series.x.min() + series.x.max()) / 2
    axes.annotate(
        f"best {best_x:.3g}: {best_y:.3f}",
        (best_x, best_y),
        textcoords="offset points",
        xytext=(-8 if right_half else 8, 8),
        ha="right" if right_half else "left",
        fontsize=8,
        color=colour,
    )


def draw_baselines(axes: Axes, baselines: Baselines) -> None:
    """The untrained encoder (mean over its seeds) and the raw pixels as horizontal reference
    lines, gids ``baseline:untrained`` and ``baseline:pixels``. Sweeps drawn together that were
    evaluated differently get one pair per evaluation setting, labelled and gid-suffixed with it."""
    groups = baselines.by_setting()
    for (dataset, size, k, limit), group in groups.items():
        setting = (
            ""
            if len(groups) == 1
            else f"kNN {dataset} {size} px k={k}" + (f" {limit} images" if limit else "")
        )
        for kind, value in ((UNTRAINED, group.untrained_mean), (PIXELS, group.pixels)):
            if value is None:
                continue
            colour, linestyle = BASELINE_STYLES[kind]
            axes.axhline(
                value,
                color=colour,
                linestyle=linestyle,
                linewidth=1.2,
                gid=f"baseline:{kind}" + (f":{setting}" if setting else ""),
                label=BASELINE_LABELS[kind] + (f" ({setting})" if setting else ""),
            )


def _repeat_counts(count: np.ndarray) -> str:
    low, high = int(count.min()), int(count.max())
    return f"n={low}" if low == high else f"n={low}–{high}"


def _drawstopped_trials(axes: Axes, stopped: pd.DataFrame, x: str, label: str) -> None:
    if stopped.empty:
        return
    axes.plot(
        stopped[x].to_numpy(dtype=float),
        stopped[SCORE].to_numpy(),
        linestyle="none",
        marker="x",
        color=STOPPED_COLOUR,
        label=f"stopped early by ASHA ({len(stopped)})",
        gid=f"stopped:{label}",
    )


def parameter_figure(sweep: SweepData, family: str, param: str, xlabel: str, title: str) -> Figure:
    """kNN top-1 against one view parameter, one line per dataset, best point starred."""
    trials = family_trials(sweep.trials, family, title, param)
    series = repeats(trials, [DATASET], param)
    if not series:
        raise no_finished(title, trials)
    _refuse_one_value(trials, series, param, title)
    figure, (axes,) = new_figure()
    for colour, (dataset, line) in zip(COLOURS, series.items()):
        draw_series(axes, line, colour)
        _drawstopped_trials(
            axes, stopped_trials(trials[trials[DATASET] == dataset]), param, dataset
        )
    draw_baselines(axes, sweep.baselines)
    axes.set(xlabel=xlabel, ylabel=SCORE_LABEL, title=title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return figure


def _values(values: Any) -> str:
    return ", ".join(f"{float(value):g}" for value in values)


def _refuse_one_value(
    trials: pd.DataFrame, series: dict[Any, Series], param: str, title: str
) -> None:
    """A curve against ``param`` says nothing where no dataset's scored trials (finished, or
    stopped early) took two values of it: MissingData naming the values they took."""
    scored = trials[
        trials["status"].isin([Outcome.FINISHED, Outcome.STOPPED]) & trials[SCORE].notna()
    ]
    if (scored.groupby(DATASET)[param].nunique() > 1).any():
        return
    name = param.removeprefix("views.params.")
    taken = "; ".join(f"{dataset}: {name} {_values(line.x)}" for dataset, line in series.items())
    raise MissingData(
        f"{title} draws kNN accuracy against {param}; this sweep's trials took one value of it "
        f"per dataset ({taken}): no curve to draw, the score is in the trials table",
        f"one {name} value per dataset",
    )


def overlap_figure(sweep: SweepData) -> Figure:
    return parameter_figure(
        sweep,
        "overlap",
        "views.params.overlap",
        "overlap (shared fraction of the image)",
        "Fig. 2a: kNN accuracy vs overlap size",
    )


def patch_figure(sweep: SweepData) -> Figure:
    return parameter_figure(
        sweep,
        "patch",
        "views.params.patch",
        "patch size (fraction of the image)",
        "Fig. 2b: kNN accuracy vs patch size",
    )


def exclusive_figure(sweep: SweepData) -> Figure:
    return parameter_figure(
        sweep,
        "exclusive",
        "views.params.gap",
        "gap: exclusive-region area between the crops (fraction of the image)",
        "Fig. 3: mutually exclusive crops",
    )


def overlap_vs_patch_figure(sweep: SweepData) -> Figure:
    """Fig. 2c: the best overlap against the best patch per dataset, bars annotated with
    the size that won."""
    title = "Fig. 2c: best overlap vs best patch"
    best = best_settings(
        sweep, {"overlap": "views.params.overlap", "patch": "views.params.patch"}, title
    )
    datasets = sorted({item.dataset for item in best})
    on = {
        family: sorted({item.dataset for item in best if item.family == family})
        for family in ("overlap", "patch")
    }
    if not set(on["overlap"]) & set(on["patch"]):
        raise MissingData(
            f"{title} sets the best overlap beside the best patch of the same dataset; this "
            f"sweep's finished trials have overlap on {on['overlap'] or 'no dataset'} and patch "
            f"on {on['patch'] or 'no dataset'}",
            "overlap and patch on no common dataset",
        )
    figure, (axes,) = new_figure()
    width = 0.38
    for offset, (family, colour) in enumerate((("overlap", COLOURS[0]), ("patch", COLOURS[1]))):
        items = {item.dataset: item for item in best if item.family == family}
        positions = [
            index + (offset - 0.5) * width
            for index, dataset in enumerate(datasets)
            if dataset in items
        ]
        chosen = [items[dataset] for dataset in datasets if dataset in items]
        bars = axes.bar(
            positions,
            [item.mean for item in chosen],
            width,
            yerr=np.array([item.yerr for item in chosen]).T.reshape(2, -1),
            color=colour,
            capsize=3,
            label=f"best {family}",
            gid=f"mean:{family}",
        )
        bars.errorbar.lines[2][0].set_gid(f"ci:{family}")
        axes.bar_label(
            bars,
            [f"{family} {item.value:g}\n{item.mean:.3f}" for item in chosen],
            fontsize=7,
            padding=2,
        )
    draw_baselines(axes, sweep.baselines)
    axes.set_xticks(range(len(datasets)), datasets)
    axes.set(xlabel="dataset", ylabel=SCORE_LABEL, title=title)
    axes.set_ylim(0, 1.12)
    axes.legend(fontsize=8, loc="lower right")
    return figure


def cutout_figure(sweep: SweepData) -> Figure:
    """Fig. 4: cutout (zero fill) against cutout-blur at each blur strength and hole size, one
    panel per dataset."""
    title = "Fig. 4: cutout vs cutout-blur"
    trials, arms = cutout_arms(family_trials(sweep.trials, "cutout", title, "views.params.hole"))
    series = repeats(trials, [DATASET, CUTOUT_ARM], "views.params.hole")
    if not series:
        raise no_finished(title, trials)
    at: dict[tuple[str, float], list[str]] = {}
    for (dataset, arm), line in series.items():
        for hole in line.x:
            at.setdefault((dataset, float(hole)), []).append(arm)
    if all(len(found) < 2 for found in at.values()):
        found = "; ".join(
            f"{dataset}, size {hole:g}: {', '.join(arms_at)}"
            for (dataset, hole), arms_at in sorted(at.items())
        )
        raise MissingData(
            f"{title} compares cutout and cutout-blur arms at the same cutout size; this sweep's "
            f"finished cutout trials have one arm at each dataset and size ({found})",
            "one cutout arm per size",
        )
    datasets = sorted({dataset for dataset, _ in series})
    figure, axes_list = new_figure(width=5.6, ncols=len(datasets))
    for axes, dataset in zip(axes_list, datasets):
        drawn = [arm for arm in arms if (dataset, arm) in series]
        holes = sorted(
            {float(x) for (name, _), line in series.items() if name == dataset for x in line.x}
        )
        width = 0.8 / max(len(drawn), 1)
        for offset, arm in enumerate(drawn):
            line = series[(dataset, arm)]
            positions = [
                holes.index(float(x)) + (offset - (len(drawn) - 1) / 2) * width for x in line.x
            ]
            bars = axes.bar(
                positions,
                line.mean,
                width,
                yerr=line.yerr,
                capsize=3,
                color=COLOURS[offset % len(COLOURS)],
                label=arm,
                gid=f"mean:{dataset}:{arm}",
            )
            if bars.errorbar is not None:
                bars.errorbar.lines[2][0].set_gid(f"ci:{dataset}:{arm}")
        draw_baselines(axes, sweep.baselines)
        axes.set_xticks(range(len(holes)), [f"{hole:g}" for hole in holes])
        axes.set(
            xlabel="cutout size (fraction of the image)",
            ylabel=SCORE_LABEL,
            title=f"{title}\n{dataset}",
        )
        axes.set_ylim(0, 1.05)
        axes.legend(fontsize=8, loc="lower right")
    return figure


def margin_figure(sweep: SweepData) -> Figure:
    """Fig. 5: kNN top-1 against epoch for vanilla, fixed-margin and distance-margin training."""
    title = "Fig. 5: margins on the SimSiam loss"
    trials = margin_trials(sweep.trials, title)
    curves = epoch_curves(sweep, MARGIN_ARM, trials)
    if not curves:
        raise no_finished(title, trials)
    if len(curves) < 2:
        (arm,) = curves
        raise MissingData(
            f"{title} compares the margin arms by epoch; of this sweep's arms "
            f"{margin_arms(trials)}, only {arm!r} has trials that ran every epoch",
            "one margin arm finished",
        )
    figure, (axes,) = new_figure()
    for colour, arm in zip(COLOURS * 2, [arm for arm in margin_arms(trials) if arm in curves]):
        curve = curves[arm]
        epochs, mean = curve.index.to_numpy(), curve["mean"].to_numpy()
        repeated = bool((curve["count"] > 1).any())
        shaded = ", 95% t-interval shaded" if repeated else ""
        axes.plot(
            epochs,
            mean,
            marker="o",
            color=colour,
            label=f"{arm} (n={int(curve['count'].max())}{shaded})",
            gid=f"mean:{arm}",
        )
        if repeated:
            axes.fill_between(
                epochs,
                curve["low"].to_numpy(),
                curve["high"].to_numpy(),
                color=colour,
                alpha=0.2,
                gid=f"ci:{arm}",
            )
    draw_baselines(axes, sweep.baselines)
    setting = ", ".join(f"{family} views on {dataset}" for family, dataset in settings_of(trials))
    axes.set(xlabel="epoch", ylabel=SCORE_LABEL, title=f"{title}\n{setting}")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return figure


def learning_curves_figure(sweep: SweepData) -> Figure:
    """Every trial's kNN top-1 by epoch; ASHA-stopped trials dashed and ending in a cross."""
    history = sweep.epochs.dropna(subset=[KNN_TOP1])
    if history.empty:
        raise MissingData(
            f"learning curves need per-epoch knn_top1; sweep {sweep.name} has no epochs recorded",
            "no epochs recorded",
        )
    per_trial = history.groupby("trial_id")[EPOCH].nunique()
    if per_trial.max() < 2:
        raise MissingData(
            "learning curves need trials of at least two epochs; each of the "
            f"{len(per_trial)} trials of sweep {sweep.name} recorded one "
            f"(epoch {_values(sorted(set(history[EPOCH])))})",
            "one epoch per trial",
        )
    status = dict(zip(sweep.trials["trial_id"], sweep.trials["status"]))
    figure, (axes,) = new_figure(width=7.2)
    seen = set()
    for index, (trial_id, rows) in enumerate(
        history.sort_values(EPOCH).groupby("trial_id", sort=True)
    ):
        trial_status = status.get(trial_id, Outcome.FAILED)
        linestyle, marker = STATUS_STYLES.get(trial_status, STATUS_STYLES[Outcome.FAILED])
        colour = (
            STOPPED_COLOUR if trial_status == Outcome.STOPPED else COLOURS[index % len(COLOURS)]
        )
        label = None if trial_status in seen else trial_status.lower()
        seen.add(trial_status)
        epochs, scores = rows[EPOCH].to_numpy(), rows[KNN_TOP1].to_numpy()
        axes.plot(
            epochs,
            scores,
            linestyle=linestyle,
            color=colour,
            alpha=0.85,
            label=label,
            gid=f"trial:{trial_id}",
        )
        axes.plot(epochs[-1:], scores[-1:], marker=marker, color=colour, linestyle="none")
    draw_baselines(axes, sweep.baselines)
    axes.axvline(sweep.max_epochs, color="0.3", linestyle=":", linewidth=1)
    axes.annotate(
        "max epochs",
        (sweep.max_epochs, axes.get_ylim()[0]),
        fontsize=8,
        rotation=90,
        va="bottom",
        ha="right",
    )
    counts = ", ".join(
        f"{count} {name.lower()}" for name, count in sweep.trials["status"].value_counts().items()
    )
    axes.set(
        xlabel="epoch",
        ylabel=SCORE_LABEL,
        title=f"Learning curves of {len(status)} trials ({counts})",
    )
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return figure


REALISED_PANELS = {
    "overlap": ("realised overlap (shared area / image area)", "fraction of training pairs"),
    "phi": ("centre distance φ (fraction of the image diagonal)", "fraction of training pairs"),
    "crop_area": ("crop area (view box area / image area)", "fraction of training views"),
    "crop_aspect": (
        "crop aspect ratio (box width / height, log scale)",
        "fraction of training views",
    ),
}
"""The histograms of ``view_stats.json`` drawn, each in its own panel:
name -> (x label, y label)."""


def _histogram_edges(data: dict[str, Any], name: str) -> np.ndarray:
    return np.asarray(data.get(f"{name}_bin_edges", data["bin_edges"]))


def realised_views_figure(stats: dict[str, dict[str, Any]], trials: pd.DataFrame) -> Figure:
    """Histograms of the realised overlap, centre distance phi, crop area and crop aspect of the
    views trained on, summed over the trials of each view setting. Runs logged before the crop
    statistics were recorded add nothing to the crop panels."""
    if not stats:
        raise MissingData(
            "realised-view distributions need the trials' view_stats.json artifacts in MLflow; "
            "none were found",
            "no view_stats.json",
        )
    labels = dict(zip(trials["trial_id"], view_setting_labels(trials)))
    totals: dict[str, dict[str, np.ndarray]] = {}
    edges: dict[str, np.ndarray] = {}
    for trial_id, data in stats.items():
        label = labels.get(trial_id, trial_id)
        for name in REALISED_PANELS:
            edges[name] = _histogram_edges(data, name)
            counts = np.asarray(data.get(name, np.zeros(len(edges[name]) - 1)), dtype=float)
            totals.setdefault(label, {}).setdefault(name, np.zeros(len(edges[name]) - 1))
            totals[label][name] += counts
    figure, axes_list = new_figure(width=5.2, ncols=len(REALISED_PANELS))
    for axes, (name, (xlabel, ylabel)) in zip(axes_list, REALISED_PANELS.items()):
        for colour, (label, counts) in zip(COLOURS * 4, sorted(totals.items())):
            density = counts[name] / max(counts[name].sum(), 1)
            axes.stairs(density, edges[name], color=colour, label=label, gid=f"hist:{name}:{label}")
        if name == "crop_aspect":
            axes.set_xscale("log", base=2)
        axes.set(
            xlabel=xlabel,
            ylabel=ylabel,
            title=f"Realised {name.replace('_', ' ')} of the trained views",
        )
        axes.legend(fontsize=7)
    return figure


PAPER_FIGURES: dict[str, tuple[str, Callable[[SweepData], Figure]]] = {
    "fig2a_overlap": ("kNN accuracy against overlap size (paper Fig. 2a)", overlap_figure),
    "fig2b_patch": ("kNN accuracy against patch size (paper Fig. 2b)", patch_figure),
    "fig2c_overlap_vs_patch": (
        "Best overlap vs best patch per dataset (paper Fig. 2c)",
        overlap_vs_patch_figure,
    ),
    "fig3_exclusive": (
        "kNN accuracy against the gap between mutually exclusive crops (paper Fig. 3)",
        exclusive_figure,
    ),
    "fig4_cutout": ("Cutout vs cutout-blur at each cutout size (paper Fig. 4)", cutout_figure),
    "fig5_margin": (
        "kNN accuracy by epoch for vanilla, fixed and distance-based margins (paper Fig. 5)",
        margin_figure,
    ),
    "learning_curves": (
        "Learning curves of every trial; ASHA-stopped trials are cut short",
        learning_curves_figure,
    ),
}
"""Figures drawn from the trials tables alone: name -> (caption, draw)."""
