"""The paper's figures and a sweep's diagnostics, drawn from :class:`~dashboards.sweeps.SweepData`.

Each figure is a pair: a pure function computing what to plot from the tidy tables (tested
against the runs directly) and a function drawing it on a :class:`~matplotlib.figure.Figure`
(Agg canvas, no pyplot). A figure whose data is not in the sweep raises :class:`MissingData`
with a message naming what is missing and what the sweep has, rather than drawing an empty plot.

Scores are each trial's final ``knn_top1``; the paper figures average the trials that ran every
epoch over their seed repeats (the mean and its 95% Student-t interval,
:func:`dashboards.statistics.mean_interval`, drawn only where there are repeats) and show trials
that ASHA stopped early as grey crosses at their last score. Every kNN figure draws the sweep's
baselines (untrained encoder, raw pixels) as horizontal reference lines (:func:`draw_baselines`).
Drawn artists carry gids (``mean:<series>``, ``ci:<series>``, ``best:<series>``,
``stopped:<series>``, ``trial:<id>``, ``baseline:untrained``, ``baseline:pixels``) so tests can
find them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dashboards.statistics import mean_interval
from dashboards.sweeps import FAILED, FINISHED, STOPPED, SweepData
from trainables.baselines import BASELINE_LABELS, PIXELS, UNTRAINED, Baselines

DPI = 130
SCORE = "final_knn_top1"
SCORE_LABEL = "kNN top-1 accuracy"
FAMILY = "views.family"
DATASET = "dataset"
FILL_NAMES = {"zero": "cutout", "blur": "cutout-blur"}
MARGIN_NAMES = {"none": "vanilla", "fixed": "fixed margin", "distance": "distance-based margin"}
STATUS_STYLES = {FINISHED: ("-", "o"), STOPPED: ("--", "x"), FAILED: (":", "v")}
STOPPED_COLOUR = "0.55"
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
BASELINE_STYLES = {UNTRAINED: ("0.15", "-."), PIXELS: ("#bcbd22", (0, (2, 2)))}


class MissingData(ValueError):
    """The sweep has no data for a figure; the message says what is needed and what is there."""


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
        return np.array([self.mean - self.low, self.high - self.mean]) if (self.count > 1).any() else None

    @property
    def best(self) -> tuple[float, float]:
        index = int(np.nanargmax(self.mean))
        return float(self.x[index]), float(self.mean[index])


def new_figure(width: float = 6.4, height: float = 4.2, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(width * ncols, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, list(np.atleast_1d(figure.subplots(1, ncols)))


def _present(trials: pd.DataFrame, column: str) -> list[Any]:
    return sorted(trials[column].dropna().unique().tolist()) if column in trials else []


def family_trials(trials: pd.DataFrame, family: str, figure: str, param: str | None = None) -> pd.DataFrame:
    """The trials of one view family (with ``param`` set); MissingData if there are none."""
    selected = trials[trials[FAMILY] == family] if FAMILY in trials else trials.iloc[:0]
    if param is not None and not selected.empty:
        selected = selected[selected[param].notna()] if param in selected else selected.iloc[:0]
    if selected.empty:
        raise MissingData(
            f"{figure} needs trials of the {family!r} view family; this sweep has families {_present(trials, FAMILY) or 'none'}"
        )
    return selected


def repeats(trials: pd.DataFrame, by: Sequence[str], x: str) -> dict[Any, Series]:
    """Per group of ``by`` (one series each), the finished trials' score at each ``x``."""
    finished = trials[(trials["status"] == FINISHED) & trials[SCORE].notna()]
    series = {}
    for key, group in finished.groupby(list(by), sort=True):
        stats = interval_table(group, x, SCORE)
        label = key[0] if len(by) == 1 else key
        series[label] = Series(
            str(label), stats.index.to_numpy(dtype=float), stats["mean"].to_numpy(), stats["std"].to_numpy(), stats["count"].to_numpy(),
            stats["low"].to_numpy(), stats["high"].to_numpy(),
        )
    return series


def interval_table(rows: pd.DataFrame, by: str, value: str) -> pd.DataFrame:
    """Per value of ``by`` (sorted), mean, std (0 at one row), count and the 95% t-interval low/high of ``value``."""
    table = {}
    for key, values in rows.groupby(by, sort=True)[value]:
        interval = mean_interval(values.to_numpy())
        spread = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        table[key] = {"mean": interval.mean, "std": spread, "count": interval.count, "low": interval.low, "high": interval.high}
    return pd.DataFrame.from_dict(table, orient="index", columns=["mean", "std", "count", "low", "high"]).sort_index()


def _stopped(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[(trials["status"] == STOPPED) & trials[SCORE].notna()]


def _draw_series(axes: Axes, series: Series, colour: str) -> None:
    has_repeats = series.yerr is not None
    container = axes.errorbar(
        series.x, series.mean, yerr=series.yerr, color=colour, marker="o", capsize=3,
        label=f"{series.label} ({_repeat_counts(series.count)} per point, 95% t-interval)" if has_repeats else series.label,
    )
    container.lines[0].set_gid(f"mean:{series.label}")
    if has_repeats:
        container.lines[2][0].set_gid(f"ci:{series.label}")
    best_x, best_y = series.best
    axes.plot([best_x], [best_y], marker="*", markersize=16, color=colour, markeredgecolor="black", linestyle="none", gid=f"best:{series.label}")
    right_half = best_x > (series.x.min() + series.x.max()) / 2
    axes.annotate(
        f"best {best_x:.3g}: {best_y:.3f}", (best_x, best_y), textcoords="offset points", xytext=(-8 if right_half else 8, 8),
        ha="right" if right_half else "left", fontsize=8, color=colour,
    )


def draw_baselines(axes: Axes, baselines: Baselines) -> None:
    """The untrained encoder (mean over its seeds) and the raw pixels as horizontal reference
    lines, gids ``baseline:untrained`` and ``baseline:pixels``. Sweeps drawn together that were
    evaluated differently get one pair per evaluation setting, labelled and gid-suffixed with it."""
    groups = baselines.by_setting()
    for (dataset, size, k, limit), group in groups.items():
        setting = "" if len(groups) == 1 else f"kNN {dataset} {size} px k={k}" + (f" {limit} images" if limit else "")
        for kind, value in ((UNTRAINED, group.untrained_mean), (PIXELS, group.pixels)):
            if value is None:
                continue
            colour, linestyle = BASELINE_STYLES[kind]
            axes.axhline(
                value, color=colour, linestyle=linestyle, linewidth=1.2, gid=f"baseline:{kind}" + (f":{setting}" if setting else ""),
                label=BASELINE_LABELS[kind] + (f" ({setting})" if setting else ""),
            )


def _repeat_counts(count: np.ndarray) -> str:
    low, high = int(count.min()), int(count.max())
    return f"n={low}" if low == high else f"n={low}–{high}"


def _draw_stopped(axes: Axes, stopped: pd.DataFrame, x: str, label: str) -> None:
    if stopped.empty:
        return
    axes.plot(
        stopped[x].to_numpy(dtype=float), stopped[SCORE].to_numpy(), linestyle="none", marker="x", color=STOPPED_COLOUR,
        label=f"stopped early by ASHA ({len(stopped)})", gid=f"stopped:{label}",
    )


def _no_finished(figure_name: str, trials: pd.DataFrame) -> MissingData:
    counts = trials["status"].value_counts().to_dict()
    return MissingData(f"{figure_name} needs trials that ran every epoch; this sweep's {len(trials)} such trials are {counts}")


def parameter_figure(sweep: SweepData, family: str, param: str, xlabel: str, title: str) -> Figure:
    """kNN top-1 against one view parameter, one line per dataset, best point starred."""
    trials = family_trials(sweep.trials, family, title, param)
    series = repeats(trials, [DATASET], param)
    if not series:
        raise _no_finished(title, trials)
    figure, (axes,) = new_figure()
    for colour, (dataset, line) in zip(COLOURS, series.items()):
        _draw_series(axes, line, colour)
        _draw_stopped(axes, _stopped(trials[trials[DATASET] == dataset]), param, dataset)
    draw_baselines(axes, sweep.baselines)
    axes.set(xlabel=xlabel, ylabel=SCORE_LABEL, title=title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return figure


def overlap_figure(sweep: SweepData) -> Figure:
    return parameter_figure(sweep, "overlap", "views.params.overlap", "overlap (shared fraction of the image)", "Fig. 2a: kNN accuracy vs overlap size")


def patch_figure(sweep: SweepData) -> Figure:
    return parameter_figure(sweep, "patch", "views.params.patch", "patch size (fraction of the image)", "Fig. 2b: kNN accuracy vs patch size")


def exclusive_figure(sweep: SweepData) -> Figure:
    return parameter_figure(sweep, "exclusive", "views.params.gap", "gap between the crops (fraction of the image side)", "Fig. 3: mutually exclusive crops")


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
        return (self.mean - self.low, self.high - self.mean) if self.count > 1 else (float("nan"), float("nan"))


def best_settings(sweep: SweepData, families: dict[str, str], figure_name: str) -> list[BestOf]:
    """Per dataset and family (``{family: param}``), the parameter value with the best mean."""
    best = []
    for family, param in families.items():
        trials = family_trials(sweep.trials, family, figure_name, param)
        for dataset, series in repeats(trials, [DATASET], param).items():
            index = int(np.nanargmax(series.mean))
            best.append(BestOf(
                dataset, family, float(series.x[index]), float(series.mean[index]), float(series.std[index]), int(series.count[index]),
                float(series.low[index]), float(series.high[index]),
            ))
    if not best:
        raise _no_finished(figure_name, sweep.trials)
    return best


def overlap_vs_patch_figure(sweep: SweepData) -> Figure:
    """Fig. 2c: the best overlap against the best patch per dataset, bars annotated with the size that won."""
    title = "Fig. 2c: best overlap vs best patch"
    best = best_settings(sweep, {"overlap": "views.params.overlap", "patch": "views.params.patch"}, title)
    datasets = sorted({item.dataset for item in best})
    figure, (axes,) = new_figure()
    width = 0.38
    for offset, (family, colour) in enumerate((("overlap", COLOURS[0]), ("patch", COLOURS[1]))):
        items = {item.dataset: item for item in best if item.family == family}
        positions = [index + (offset - 0.5) * width for index, dataset in enumerate(datasets) if dataset in items]
        chosen = [items[dataset] for dataset in datasets if dataset in items]
        bars = axes.bar(
            positions, [item.mean for item in chosen], width, yerr=np.array([item.yerr for item in chosen]).T.reshape(2, -1),
            color=colour, capsize=3, label=f"best {family}", gid=f"mean:{family}",
        )
        bars.errorbar.lines[2][0].set_gid(f"ci:{family}")
        axes.bar_label(bars, [f"{family} {item.value:g}\n{item.mean:.3f}" for item in chosen], fontsize=7, padding=2)
    draw_baselines(axes, sweep.baselines)
    axes.set_xticks(range(len(datasets)), datasets)
    axes.set(xlabel="dataset", ylabel=SCORE_LABEL, title=title)
    axes.set_ylim(0, 1.12)
    axes.legend(fontsize=8, loc="lower right")
    return figure


def cutout_figure(sweep: SweepData) -> Figure:
    """Fig. 4: cutout (zero fill) against cutout-blur at each hole size, one panel per dataset."""
    title = "Fig. 4: cutout vs cutout-blur"
    trials = family_trials(sweep.trials, "cutout", title, "views.params.hole")
    series = repeats(trials, [DATASET, "views.params.fill"], "views.params.hole")
    if not series:
        raise _no_finished(title, trials)
    datasets = sorted({dataset for dataset, _ in series})
    figure, axes_list = new_figure(width=5.6, ncols=len(datasets))
    for axes, dataset in zip(axes_list, datasets):
        fills = [fill for fill in FILL_NAMES if (dataset, fill) in series]
        holes = sorted({float(x) for (name, _), line in series.items() if name == dataset for x in line.x})
        width = 0.8 / max(len(fills), 1)
        for offset, fill in enumerate(fills):
            line = series[(dataset, fill)]
            positions = [holes.index(float(x)) + (offset - (len(fills) - 1) / 2) * width for x in line.x]
            bars = axes.bar(
                positions, line.mean, width, yerr=line.yerr, capsize=3,
                color=COLOURS[offset], label=FILL_NAMES[fill], gid=f"mean:{dataset}:{fill}",
            )
            if bars.errorbar is not None:
                bars.errorbar.lines[2][0].set_gid(f"ci:{dataset}:{fill}")
        draw_baselines(axes, sweep.baselines)
        axes.set_xticks(range(len(holes)), [f"{hole:g}" for hole in holes])
        axes.set(xlabel="cutout size (fraction of the image)", ylabel=SCORE_LABEL, title=f"{title}\n{dataset}")
        axes.set_ylim(0, 1.05)
        axes.legend(fontsize=8, loc="lower right")
    return figure


def epoch_curves(sweep: SweepData, by: str, trials: pd.DataFrame | None = None) -> dict[Any, pd.DataFrame]:
    """Per value of ``by``, mean/std/count and 95% t-interval low/high of ``knn_top1`` at each
    epoch over the finished trials."""
    trials = sweep.trials if trials is None else trials
    finished = trials[trials["status"] == FINISHED][["trial_id", by]]
    history = sweep.epochs.dropna(subset=["knn_top1"]).merge(finished, on="trial_id")
    return {key: interval_table(group, "epoch", "knn_top1") for key, group in history.groupby(by, sort=True)}


def _pairs(trials: pd.DataFrame) -> list[tuple[str, str]]:
    return sorted(set(zip(trials[FAMILY], trials[DATASET])))


def margin_trials(trials: pd.DataFrame, figure_name: str) -> pd.DataFrame:
    """The trials comparable with the margin trials: those of the same view family and dataset
    (a report drawing other sweeps too has vanilla trials of other families)."""
    with_margin = trials[trials["margin.mode"].fillna("none") != "none"] if "margin.mode" in trials else trials.iloc[:0]
    settings = set(_pairs(with_margin))
    comparable = trials[[pair in settings for pair in zip(trials[FAMILY], trials[DATASET])]]
    modes = _present(comparable, "margin.mode")
    if len(modes) < 2:
        raise MissingData(
            f"{figure_name} needs trials of at least two margin modes of {list(MARGIN_NAMES)} on the same views and dataset; "
            f"this sweep has {_present(trials, 'margin.mode') or 'none'}"
        )
    return comparable


def margin_figure(sweep: SweepData) -> Figure:
    """Fig. 5: kNN top-1 against epoch for vanilla, fixed-margin and distance-margin training."""
    title = "Fig. 5: margins on the SimSiam loss"
    trials = margin_trials(sweep.trials, title)
    curves = epoch_curves(sweep, "margin.mode", trials)
    if not curves:
        raise _no_finished(title, trials)
    figure, (axes,) = new_figure()
    for colour, mode in zip(COLOURS, MARGIN_NAMES):
        if mode not in curves:
            continue
        curve = curves[mode]
        epochs, mean = curve.index.to_numpy(), curve["mean"].to_numpy()
        repeated = bool((curve["count"] > 1).any())
        shaded = ", 95% t-interval shaded" if repeated else ""
        axes.plot(epochs, mean, marker="o", color=colour, label=f"{MARGIN_NAMES[mode]} (n={int(curve['count'].max())}{shaded})", gid=f"mean:{mode}")
        if repeated:
            axes.fill_between(epochs, curve["low"].to_numpy(), curve["high"].to_numpy(), color=colour, alpha=0.2, gid=f"ci:{mode}")
    draw_baselines(axes, sweep.baselines)
    setting = ", ".join(f"{family} views on {dataset}" for family, dataset in _pairs(trials))
    axes.set(xlabel="epoch", ylabel=SCORE_LABEL, title=f"{title}\n{setting}")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return figure


def learning_curves_figure(sweep: SweepData) -> Figure:
    """Every trial's kNN top-1 by epoch; ASHA-stopped trials dashed and ending in a cross."""
    history = sweep.epochs.dropna(subset=["knn_top1"])
    if history.empty:
        raise MissingData(f"learning curves need per-epoch knn_top1; sweep {sweep.name} has no epochs recorded")
    status = dict(zip(sweep.trials["trial_id"], sweep.trials["status"]))
    figure, (axes,) = new_figure(width=7.2)
    seen = set()
    for index, (trial_id, rows) in enumerate(history.sort_values("epoch").groupby("trial_id", sort=True)):
        trial_status = status.get(trial_id, FAILED)
        linestyle, marker = STATUS_STYLES.get(trial_status, STATUS_STYLES[FAILED])
        colour = STOPPED_COLOUR if trial_status == STOPPED else COLOURS[index % len(COLOURS)]
        label = None if trial_status in seen else trial_status.lower()
        seen.add(trial_status)
        epochs, scores = rows["epoch"].to_numpy(), rows["knn_top1"].to_numpy()
        axes.plot(epochs, scores, linestyle=linestyle, color=colour, alpha=0.85, label=label, gid=f"trial:{trial_id}")
        axes.plot(epochs[-1:], scores[-1:], marker=marker, color=colour, linestyle="none")
    draw_baselines(axes, sweep.baselines)
    axes.axvline(sweep.max_epochs, color="0.3", linestyle=":", linewidth=1)
    axes.annotate("max epochs", (sweep.max_epochs, axes.get_ylim()[0]), fontsize=8, rotation=90, va="bottom", ha="right")
    counts = ", ".join(f"{count} {name.lower()}" for name, count in sweep.trials["status"].value_counts().items())
    axes.set(xlabel="epoch", ylabel=SCORE_LABEL, title=f"Learning curves of {len(status)} trials ({counts})")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return figure


def realised_views_figure(stats: dict[str, dict[str, Any]], trials: pd.DataFrame) -> Figure:
    """Histograms of the realised overlap and centre distance phi of the pairs trained on, summed
    over the trials of each view setting."""
    if not stats:
        raise MissingData("realised-view distributions need the trials' view_stats.json artifacts in MLflow; none were found")
    labels = dict(zip(trials["trial_id"], view_setting_labels(trials)))
    totals: dict[str, dict[str, np.ndarray]] = {}
    edges = None
    for trial_id, data in stats.items():
        edges = np.asarray(data["bin_edges"])
        label = labels.get(trial_id, trial_id)
        for name in ("overlap", "phi"):
            totals.setdefault(label, {}).setdefault(name, np.zeros(len(edges) - 1))
            totals[label][name] += np.asarray(data[name], dtype=float)
    figure, axes_list = new_figure(width=5.2, ncols=2)
    names = {"overlap": "realised overlap (shared area / image area)", "phi": "centre distance φ (fraction of the image diagonal)"}
    for axes, (name, xlabel) in zip(axes_list, names.items()):
        for colour, (label, counts) in zip(COLOURS * 4, sorted(totals.items())):
            density = counts[name] / max(counts[name].sum(), 1)
            axes.stairs(density, edges, color=colour, label=label, gid=f"hist:{name}:{label}")
        axes.set(xlabel=xlabel, ylabel="fraction of training pairs", title=f"Realised {name} of the trained views")
        axes.legend(fontsize=7)
    return figure


def view_setting_labels(trials: pd.DataFrame) -> list[str]:
    """``overlap 0.3``, ``cutout hole=0.3 fill=blur``: the family and its searched parameters."""
    params = [column for column in trials.columns if column.startswith("views.params.")]
    labels = []
    for _, row in trials.iterrows():
        values = [f"{column.removeprefix('views.params.')}={_short(row[column])}" for column in params if _is_set(row[column])]
        margin = row.get("margin.mode")
        if _is_set(margin) and margin != "none":
            values.append(f"margin={margin}")
        labels.append(f"{row[FAMILY]}: {' '.join(values)}" if values else str(row[FAMILY]))
    return labels


def _is_set(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value))


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


PAPER_FIGURES: dict[str, tuple[str, Callable[[SweepData], Figure]]] = {
    "fig2a_overlap": ("kNN accuracy against overlap size (paper Fig. 2a)", overlap_figure),
    "fig2b_patch": ("kNN accuracy against patch size (paper Fig. 2b)", patch_figure),
    "fig2c_overlap_vs_patch": ("Best overlap vs best patch per dataset (paper Fig. 2c)", overlap_vs_patch_figure),
    "fig3_exclusive": ("kNN accuracy against the gap between mutually exclusive crops (paper Fig. 3)", exclusive_figure),
    "fig4_cutout": ("Cutout vs cutout-blur at each cutout size (paper Fig. 4)", cutout_figure),
    "fig5_margin": ("kNN accuracy by epoch for vanilla, fixed and distance-based margins (paper Fig. 5)", margin_figure),
    "learning_curves": ("Learning curves of every trial; ASHA-stopped trials are cut short", learning_curves_figure),
}
"""Figures drawn from the trials tables alone: name -> (caption, draw)."""
