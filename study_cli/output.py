"""What the ``study`` command prints: a training's epochs, a sweep's closing lines, the report's
files and ``study ls``."""

from __future__ import annotations

import time
from pathlib import Path

from study.vocabulary import (
    EPOCH,
    FLOOR_ACTIVE,
    IMAGES_PER_S,
    KNN_TOP1,
    KNN_TOP5,
    LOSS,
    OVERLAP_MEAN,
    PHI_MEAN,
    Z_STD,
)
from trainables.config import TrainConfig

TABLE_COLUMNS = (
    EPOCH,
    LOSS,
    KNN_TOP1,
    KNN_TOP5,
    Z_STD,
    FLOOR_ACTIVE,
    OVERLAP_MEAN,
    PHI_MEAN,
    IMAGES_PER_S,
)
"""The columns ``study train`` prints per epoch."""


def format_row(values: dict[str, float]) -> str:
    cells = []
    for column in TABLE_COLUMNS:
        value = values.get(column, float("nan"))
        cells.append(f"{value:>12d}" if column == EPOCH else f"{value:>12.4f}")
    return " ".join(cells)


def run_training(config: TrainConfig, out: Path | None) -> None:
    from trainables.baselines import (  # torch start-up cost only once input is valid
        describe,
        sweep_baselines,
    )
    from trainables.train import train

    print(
        f"training {config.views.family} views on {config.data.dataset}, kNN on "
        f"{config.data.eval_dataset}"
    )
    baselines = sweep_baselines(config, [config.seed])
    print(f"baselines (kNN top-1, same seed): {describe(baselines)}")
    print(" ".join(f"{column:>12}" for column in TABLE_COLUMNS), flush=True)
    started = time.perf_counter()
    history = train(
        config, report=lambda metrics, _: print(format_row(metrics), flush=True), workdir=out
    )
    final = history[-1]
    print(
        f"done in {time.perf_counter() - started:.0f} s: {KNN_TOP1}={final[KNN_TOP1]:.4f} "
        f"{KNN_TOP5}={final[KNN_TOP5]:.4f}" + (f", last checkpoint under {out}" if out else "")
    )
    print(f"against the baselines: {describe(baselines, final[KNN_TOP1], config.seed)}")


def print_result(result) -> None:
    from study.results import format_table
    from trainables.baselines import describe

    print(f"\nsweep {result.name}: {result.trials.num_rows} trials")
    print(format_table(result.trials))
    if result.best is not None:
        views = result.best_config["views"]
        print(
            f"\nbest knn_top1={result.best.knn_top1:.4f}: trial {result.best.trial_id} "
            f"({result.best.rule}), "
            f"views {views['family']} {views['params']}, margin {result.best_config['margin']}, "
            f"seed {result.best_config['seed']}"
        )
    if result.baselines:
        best_seed = result.best_config["seed"] if result.best_config is not None else None
        print(f"baselines: {describe(result.baselines, result.best_knn_top1, best_seed)}")
    print(f"results: {result.trials_path} and {result.epochs_path}")
    print(f"browse:  {result.ui_command()}, then {result.ui_page()}")


def print_interrupted(interrupted) -> None:
    """The closing lines of a sweep a signal stopped: how far it got and how to finish it."""
    how = f" by {interrupted.signal}" if interrupted.signal else ""
    ended = (
        f"{interrupted.ended} of {interrupted.planned} trials had ended"
        if interrupted.ended is not None
        else f"MLflow did not say how many of the {interrupted.planned} trials had ended"
    )
    print(
        f"\nsweep {interrupted.name} interrupted{how}: {ended}; "
        "what was written is kept (trials cut short are KILLED, study.stopped_by=interrupt)"
    )
    print(f"resume with: {interrupted.resume_command()}", flush=True)


def print_report(report) -> None:
    print(f"\nreport: {report.html_path}")
    print(f"figures: {', '.join(entry.name for entry in report.drawn)} (PNG in {report.directory})")
    if report.missing:
        print(
            "not drawn: "
            + ", ".join(f"{entry.name} ({entry.why or 'no data'})" for entry in report.missing)
            + " (the reasons in full in the report)"
        )


def print_listing(listings) -> None:
    print(f"{'name':<48} {'state':<12} {'mode':<7} {'trials':>6} {'best knn_top1':>14}")
    for listing in listings:
        state = listing.state
        best = "-" if state.best is None else f"{state.best.knn_top1:.4f}"
        notes = f"  (closed {listing.repaired} runs left RUNNING)" if listing.repaired else ""
        if state.pending_tracking_writes:
            notes += (
                f"  ({state.pending_tracking_writes} tracking writes kept: study sync {state.name})"
            )
        print(
            f"{state.name:<48} {state.lifecycle:<12} {state.mode:<7} {state.trials or '-':>6} "
            f"{best:>14}{notes}"
        )
