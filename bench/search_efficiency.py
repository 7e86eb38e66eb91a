"""Benchmark 5: search efficiency, ASHA + TPE against the exhaustive grid.

Runs real sweeps of the overlap space on a bundled dataset (default: ``patterns``, its
``patterns-quick`` trials), one after the other on local Ray with the same training seed, epochs
and concurrency: the paper's 9-point grid, every point to the last epoch (no early stopping), and
an Optuna TPE search under ASHA once per searcher seed. Every epoch of every trial is read back
from MLflow with the time the sweep driver logged it. A sweep *reaches* the target once any trial
has reported a kNN top-1 within 1 point of the grid's best; the epochs it spent are all the
epochs its trials had reported by then. The grid needs all of its epochs to know its best, so
the target is: ASHA + TPE reaches it within 40% of the grid's epochs, as the mean over
searcher seeds (each seed's fraction is tabled beside it).

    .venv/bin/python -m bench.search_efficiency [--dataset patterns] [--samples 16] [--epochs N]
        [--searcher-seeds 0 1 2] [--smoke]
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

from bench.common import parser, table
from study.vocabulary import ROLE_TAG
from trainables.baselines import Baselines

TARGET_FRACTION = 0.4
TOLERANCE = 0.01  # one point of top-1 accuracy


@dataclass(frozen=True)
class Report:
    """One epoch of one trial, as the sweep logged it to MLflow."""

    logged_ms: int
    trial: str
    epoch: int
    knn_top1: float


def reports_of(tracking_uri: str, experiment_name: str) -> list[Report]:
    """Every epoch report of the sweep's child runs, in the order they were logged."""
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'trial'", max_results=1000
    )
    reports = [
        Report(point.timestamp, run.info.run_id, point.step, point.value)
        for run in runs
        for point in client.get_metric_history(run.info.run_id, "knn_top1")
    ]
    return sorted(reports, key=lambda report: (report.logged_ms, report.trial, report.epoch))


def epochs_to_reach(reports: list[Report], target: float) -> int | None:
    """Epochs trained by all trials up to the first report of at least ``target``."""
    for spent, report in enumerate(reports, start=1):
        if report.knn_top1 >= target:
            return spent
    return None


def run_sweep(
    directory: Path, name: str, dataset: str, **study: object
) -> tuple[list[Report], Baselines]:
    from study.config import StudyConfig
    from study.lifecycle import run_study

    tracking_uri = f"sqlite:///{directory / 'mlflow.db'}"
    result = run_study(
        StudyConfig(
            space="overlap",
            dataset=dataset,
            name=name,
            storage=str(directory / "runs"),
            tracking_uri=tracking_uri,
            **study,
        )
    )
    return reports_of(tracking_uri, result.name), result.baselines


def fraction_row(
    sweep: str, reports: list[Report], target: float, grid_epochs: int
) -> tuple[list[str], float | None]:
    """The table row of one sweep, and its fraction of the grid's epochs
    (None: target not reached)."""
    reached = epochs_to_reach(reports, target)
    fraction = None if reached is None else reached / grid_epochs
    row = [
        sweep,
        str(len({report.trial for report in reports})),
        str(len(reports)),
        f"{max(report.knn_top1 for report in reports):.4f}",
        "not reached" if reached is None else str(reached),
        "-" if fraction is None else f"{fraction:.2f}",
    ]
    return row, fraction


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument(
        "--dataset", default="patterns", help="a bundled dataset (default: patterns)"
    )
    arguments.add_argument(
        "--samples", type=int, default=16, help="TPE trials (the overlap-search-bundled preset: 16)"
    )
    arguments.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs per trial, ASHA's max_t (default: the dataset's recipe's)",
    )
    arguments.add_argument("--seed", type=int, default=0, help="the training seed of every trial")
    arguments.add_argument(
        "--searcher-seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="one TPE + ASHA sweep per seed",
    )
    args = arguments.parse_args()
    common: dict[str, object] = {"seeds": (args.seed,)}
    if args.smoke or args.epochs is not None:
        common["epochs"] = 1 if args.smoke else args.epochs
    if args.smoke:
        common["overrides"] = {"data.limit": 128, "data.eval_limit": 128, "knn.k": 10}
    grid_only = {"views.params.overlap": [0.3, 0.6]} if args.smoke else {}
    samples = 2 if args.smoke else args.samples
    searcher_seeds = args.searcher_seeds[:1] if args.smoke else args.searcher_seeds
    headers = [
        "sweep",
        "trials",
        "epochs trained",
        "best kNN top-1",
        "epochs to reach target",
        "fraction of the grid's epochs",
    ]
    with tempfile.TemporaryDirectory(prefix="bench-search-") as scratch:
        grid, baselines = run_sweep(
            Path(scratch),
            "grid",
            args.dataset,
            grid=True,
            grid_only=grid_only,
            early_stopping=False,
            seed=args.seed,
            **common,
        )
        grid_best = max(report.knn_top1 for report in grid)
        target = grid_best - TOLERANCE
        grid_epochs = len(grid)
        epochs = max(report.epoch for report in grid)
        print(
            f"Search efficiency on bundled {args.dataset}, overlap space, "
            f"{epochs} epochs per trial, training seed {args.seed}"
        )
        print(
            f"baselines: untrained encoder {baselines.untrained_mean:.4f} (seed {args.seed}), "
            f"raw pixels {baselines.pixels:.4f}"
        )
        print(f"grid best kNN top-1 {grid_best:.4f}; target: a report of at least {target:.4f}")
        print(
            table(
                headers,
                [fraction_row("grid (every point, every epoch)", grid, target, grid_epochs)[0]],
            ),
            flush=True,
        )
        rows, fractions = [], []
        for seed in searcher_seeds:
            reports, _ = run_sweep(
                Path(scratch),
                f"asha-tpe-{seed}",
                args.dataset,
                num_samples=samples,
                early_stopping=True,
                seed=seed,
                **common,
            )
            row, fraction = fraction_row(
                f"ASHA + TPE ({samples} trials), searcher seed {seed}", reports, target, grid_epochs
            )
            print(f"searcher seed {seed}: " + " | ".join(row[1:]), flush=True)
            rows.append(row)
            fractions.append(1.0 if fraction is None else fraction)
    print(table(headers, rows))
    mean = statistics.fmean(fractions)
    spread = f", std {statistics.stdev(fractions):.2f}" if len(fractions) > 1 else ""
    met = sum(fraction <= TARGET_FRACTION for fraction in fractions)
    verdict = "met" if mean <= TARGET_FRACTION else "not met"
    print(
        f"ASHA + TPE over {len(fractions)} searcher seed{'s' if len(fractions) > 1 else ''}: "
        f"mean fraction {mean:.2f}{spread} (a seed that never reached the target counts as 1.00); "
        f"{met} of {len(fractions)} within {TARGET_FRACTION:.0%}; "
        f"target <= {TARGET_FRACTION:.0%} on the mean: {verdict}"
    )


if __name__ == "__main__":
    main()
