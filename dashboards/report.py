"""A sweep's report: every figure as PNG, and one self-contained HTML page putting them in context.

The page states the sweep's question (its space or preset description), the space searched, the
best configuration and how far it is above the baselines (:mod:`dashboards.baselines`), the
paired comparisons of the arms each paper figure compares (:mod:`dashboards.comparisons`),
whether early stopping was safe (:mod:`dashboards.early_stopping`) and the table of trials,
then shows each figure (inlined as ``data:`` PNGs, with a Content-Security-Policy that forbids
any network fetch) and lists the figures not drawn, with the reason: those the sweep has no data
for, and those its data cannot say anything with (one parameter's importance, a curve through one
value, a comparison of one arm). The files are also logged to the sweep's parent MLflow run under
``report/``.
"""

from __future__ import annotations

import base64
import html
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from dashboards.baselines import baselines_html
from dashboards.comparisons import comparisons_html
from dashboards.early_stopping import early_stopping_html, stopping_text
from dashboards.figures import DPI, PAPER_FIGURES, realised_views_figure
from dashboards.gallery import build_family_gallery_figure
from dashboards.search import (
    importance_figure,
    load_study,
    parallel_coordinates_figure,
    searched_space,
)
from dashboards.series import FAMILY, SCORE, MissingData
from dashboards.sweeps import SweepData, combine, load_sweep, view_stats
from study.best import best_trial as study_best_trial
from study.layout import sweep_directory
from study.storage import SweepStorage
from study.vocabulary import BEST_SCORE, DEFAULT_STORAGE, FINAL_SCORE, REPORT_DIR

REPORT_FILE = "report.html"
GALLERY_SETTINGS = 6
GALLERY_PAIRS = 3
TABLE_ROWS = 200
CONTENT_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85rem; } \
td, th { padding: 2px 8px; border-bottom: 1px solid #eee; text-align: left; }
figure { margin: 1.5rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9rem; } .missing { color: #8a5a00; } \
code, pre { background: #f6f6f6; }
"""


@dataclass(frozen=True)
class FigureEntry:
    """One figure of the report: drawn to ``path``, or not drawn because of ``missing`` (what
    the figure needs and what the sweep has), ``why`` in a few words."""

    name: str
    caption: str
    path: Path | None = None
    missing: str | None = None
    why: str | None = None


@dataclass(frozen=True)
class Report:
    directory: Path
    html_path: Path
    figures: list[FigureEntry]

    @property
    def drawn(self) -> list[FigureEntry]:
        return [entry for entry in self.figures if entry.path is not None]

    @property
    def missing(self) -> list[FigureEntry]:
        return [entry for entry in self.figures if entry.path is None]


def gallery_settings(
    trials: pd.DataFrame, limit: int = GALLERY_SETTINGS
) -> list[tuple[str, dict[str, Any]]]:
    """The distinct (family, view params) of the trials, at most ``limit`` spread over them."""
    params = [column for column in trials.columns if column.startswith("views.params.")]
    settings = []
    for _, row in trials.iterrows():
        values = {
            column.removeprefix("views.params."): row[column]
            for column in params
            if not _missing(row[column])
        }
        if (row[FAMILY], values) not in settings:
            settings.append((row[FAMILY], values))
    settings.sort(key=lambda item: (item[0], json.dumps(item[1], sort_keys=True, default=str)))
    if len(settings) > limit:
        settings = [
            settings[round(index * (len(settings) - 1) / (limit - 1))] for index in range(limit)
        ]
    return settings


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def gallery_figure(sweep: SweepData) -> Figure:
    trials = sweep.trials
    if trials.empty:
        raise MissingData(
            f"the view gallery needs trials; sweep {sweep.name} has none", "no trials"
        )
    first = trials.iloc[0]
    return build_family_gallery_figure(
        gallery_settings(trials),
        size=int(first["views.size"]),
        dataset=str(first["data.dataset"]),
        count=GALLERY_PAIRS,
    )


def figure_makers(sweep: SweepData) -> list[tuple[str, str, Callable[[], Figure]]]:
    """Every figure of the report as (file name, caption, draw)."""
    makers = [
        (name, caption, lambda draw=draw: draw(sweep))
        for name, (caption, draw) in PAPER_FIGURES.items()
    ]
    makers += [
        (
            "param_importance",
            "Parameter importance (fANOVA over the completed trials of the sweep's Optuna study)",
            lambda: importance_figure(load_study(sweep)),
        ),
        (
            "parallel_coordinates",
            "Parallel coordinates of the searched parameters and knn_top1 (Optuna study)",
            lambda: parallel_coordinates_figure(load_study(sweep)),
        ),
        (
            "view_gallery",
            "Sampled view pairs per family and parameter value, boxes drawn on the source image",
            lambda: gallery_figure(sweep),
        ),
        (
            "realised_views",
            "Realised overlap, centre distance, crop area and crop aspect "
            "of the views actually trained on",
            lambda: realised_views_figure(view_stats(sweep), sweep.trials),
        ),
    ]
    return makers


def draw_figures(sweep: SweepData, directory: Path) -> list[FigureEntry]:
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, caption, draw in figure_makers(sweep):
        try:
            figure = draw()
        except MissingData as reason:
            entries.append(FigureEntry(name, caption, missing=str(reason), why=reason.short))
            continue
        path = directory / f"{name}.png"
        figure.savefig(path, dpi=DPI, format="png")
        entries.append(FigureEntry(name, caption, path=path))
    return entries


def varied_columns(trials: pd.DataFrame) -> list[str]:
    """Config columns whose values differ between trials (what the sweep searched)."""
    fixed = {
        "trial_id",
        "run_id",
        "status",
        "epochs_run",
        FINAL_SCORE,
        BEST_SCORE,
        "sweep",
        "dataset",
    }
    varied = []
    for column in trials.columns:
        if column in fixed:
            continue
        values = {json.dumps(value, default=str) for value in trials[column] if not _missing(value)}
        if len(values) > 1:
            varied.append(column)
    return varied


def best_trial(trials: pd.DataFrame) -> pd.Series | None:
    """The row of the sweep's best trial, by the one rule of :func:`study.best.best_trial`."""
    best = study_best_trial(
        trials[["trial_id", "status", FINAL_SCORE, BEST_SCORE]].to_dict("records")
    )
    return None if best is None else trials[trials["trial_id"] == best.trial_id].iloc[0]


def _cell(value: Any) -> str:
    if _missing(value):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def trials_table_html(trials: pd.DataFrame) -> str:
    columns = ["trial_id", "status", "epochs_run", *varied_columns(trials), FINAL_SCORE, BEST_SCORE]
    rows = trials.sort_values(SCORE, ascending=False, na_position="last").head(TABLE_ROWS)
    header = "".join(
        f"<th>{html.escape(column.removeprefix('views.params.'))}</th>" for column in columns
    )
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(row[column])}</td>" for column in columns) + "</tr>"
        for _, row in rows.iterrows()
    )
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def space_html(sweep: SweepData) -> str:
    """The searched space: how the searcher drew each parameter (from the Optuna study), and the
    values the trials took."""
    try:
        drawn = searched_space(load_study(sweep))
    except MissingData:
        drawn = {}
    items = []
    for column in dict.fromkeys([*drawn, *varied_columns(sweep.trials)]):
        values = sorted(
            {_cell(value) for value in sweep.trials.get(column, []) if not _missing(value)}
        )
        shown = ", ".join(values[:12]) + (
            f", ... ({len(values)} values)" if len(values) > 12 else ""
        )
        how = f"{html.escape(drawn[column])}; " if column in drawn else ""
        items.append(f"<li><code>{html.escape(column)}</code>: {how}took {shown or '–'}</li>")
    config = None if sweep.state is None else sweep.state.config
    what = "?" if config is None else config.preset or config.space
    mode = "?" if sweep.state is None else sweep.state.mode
    return (
        f"<p>{html.escape(str(mode))} over <code>{html.escape(str(what))}</code>, "
        f"{sweep.max_epochs} epochs per trial, "
        f"{html.escape(stopping_text(sweep))}.</p>"
        f"<ul>{''.join(items) or '<li>one configuration</li>'}</ul>"
    )


def best_html(trials: pd.DataFrame) -> str:
    best = best_trial(trials)
    if best is None:
        return "<p>No trial reported a kNN accuracy.</p>"
    rule = study_best_trial(
        trials[["trial_id", "status", FINAL_SCORE, BEST_SCORE]].to_dict("records")
    ).rule
    varied = varied_columns(trials)
    chosen = "".join(
        f"<li><code>{html.escape(column)}</code> = {_cell(best[column])}</li>"
        for column in varied
        if not _missing(best[column])
    )
    config = {
        column: best[column]
        for column in trials.columns
        if "." in column and not _missing(best[column])
    }
    config_text = html.escape("\n".join(f"{key}: {value}" for key, value in sorted(config.items())))
    return (
        f"<p>Trial <code>{html.escape(str(best['trial_id']))}</code> "
        f"({best['status'].lower()}, {best['epochs_run']} epochs): "
        f"final knn_top1 <b>{best[SCORE]:.4f}</b>, best {best[BEST_SCORE]:.4f} "
        f"(the best trial: {html.escape(rule)}).</p>"
        f"<ul>{chosen}</ul>"
        f"<details><summary>full configuration</summary><pre>{config_text}</pre></details>"
    )


def _image(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(sweep: SweepData, entries: Sequence[FigureEntry], sweeps: Sequence[str]) -> str:
    question = (sweep.state and sweep.state.description) or "(no description recorded)"
    figures = "".join(
        f'<figure id="{entry.name}">'
        f'<img alt="{html.escape(entry.caption)}" src="{_image(entry.path)}">'
        f"<figcaption>{html.escape(entry.caption)}</figcaption></figure>"
        for entry in entries
        if entry.path is not None
    )
    missing = "".join(
        f'<li class="missing" id="missing-{entry.name}">'
        f"<b>{html.escape(entry.caption)}</b>: {html.escape(entry.missing)}</li>"
        for entry in entries
        if entry.missing is not None
    )
    statuses = ", ".join(
        f"{count} {status.lower()}"
        for status, count in sweep.trials["status"].value_counts().items()
    )
    also = (
        f"<p>Trials of sweeps {', '.join(map(html.escape, sweeps))} are drawn together.</p>"
        if len(sweeps) > 1
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CONTENT_POLICY}">
<title>Sweep {html.escape(sweep.name)}</title><style>{STYLE}</style></head>
<body>
<h1>Sweep <code>{html.escape(sweep.name)}</code></h1>
<p>{len(sweep.trials)} trials ({statuses}); data from {sweep.source}; \
written {time.strftime("%Y-%m-%d %H:%M:%S")}.</p>{also}
<h2>Question</h2><p>{html.escape(str(question))}</p>
<h2>Space</h2>{space_html(sweep)}
<h2>Best configuration</h2>{best_html(sweep.trials)}
<h2>Baselines</h2>{baselines_html(sweep, best_trial(sweep.trials), SCORE)}
<h2>Comparisons</h2>{comparisons_html(sweep)}
<h2>Early stopping</h2>{early_stopping_html(sweep)}
<h2>Figures</h2>{figures}
<h2>Not drawn for this sweep</h2>
<p>Figures this sweep has no data for, or whose data cannot say anything.</p>
<ul>{missing or "<li>every figure was drawn</li>"}</ul>
<h2>Trials</h2>{trials_table_html(sweep.trials)}
</body></html>
"""


def write_report(sweep: SweepData, directory: Path, sweeps: Sequence[str] = ()) -> Report:
    """Draw every figure into ``directory`` and write the HTML page beside them."""
    entries = draw_figures(sweep, directory)
    html_path = directory / REPORT_FILE
    partial = directory / (REPORT_FILE + ".partial")
    partial.write_text(render_html(sweep, entries, sweeps or [sweep.name]), encoding="utf-8")
    partial.replace(html_path)
    return Report(directory, html_path, entries)


def log_report(report: Report, tracking_uri: str, run_id: str) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    for path in [report.html_path, *(entry.path for entry in report.drawn)]:
        client.log_artifact(run_id, str(path), REPORT_DIR)


def report_sweep(
    name: str,
    storage: str | Path = DEFAULT_STORAGE,
    source: str = "parquet",
    with_sweeps: Sequence[str] = (),
    log: bool = True,
) -> Report:
    """``study report``: the report of sweep ``name`` (with the trials of ``with_sweeps`` drawn
    alongside) in ``storage/name/report/``, logged to the sweep's parent MLflow run."""
    sweeps = [load_sweep(each, storage, source) for each in (name, *with_sweeps)]
    sweep = combine(sweeps)
    report = write_report(
        sweep, sweep_directory(storage, name) / REPORT_DIR, [each.name for each in sweeps]
    )
    SweepStorage(str(storage)).push(name)
    if log and sweep.tracking_uri and sweep.parent_run_id:
        log_report(report, sweep.tracking_uri, sweep.parent_run_id)
    return report
