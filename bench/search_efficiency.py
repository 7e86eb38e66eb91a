"""Benchmark 5: search efficiency, ASHA + TPE against the exhaustive grid.

Runs two real sweeps of the overlap space on the bundled digits, one after the other on local
Ray with the same seed, epochs and concurrency: the paper's 9-point grid (every point to the
last epoch) and an Optuna TPE search under ASHA. Every epoch of every trial is read back from
MLflow with the time the sweep driver logged it. A sweep *reaches* the target once any trial
has reported a kNN top-1 within 1 point of the grid's best; the epochs it spent are all the
epochs its trials had reported by then. The grid needs all of its epochs to know its best, so
the target is: ASHA + TPE reaches it within 40% of the grid's epochs.

    .venv/bin/python -m bench.search_efficiency [--samples 16] [--epochs 6] [--smoke]
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

from bench.common import parser, table
from study.layout import ROLE_TAG

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
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'trial'", max_results=1000)
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


def run_sweep(directory: Path, name: str, **study: object) -> tuple[str, list[Report]]:
    from study.config import StudyConfig
    from study.sweep import run_study

    tracking_uri = f"sqlite:///{directory / 'mlflow.db'}"
    result = run_study(StudyConfig(space="overlap", dataset="digits", name=name, storage=str(directory / "runs"), tracking_uri=tracking_uri, **study))
    return result.name, reports_of(tracking_uri, result.name)


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--samples", type=int, default=16, help="TPE trials (the overlap-search-bundled preset: 16)")
    arguments.add_argument("--epochs", type=int, default=6, help="epochs per trial, ASHA's max_t (bundled presets: 6)")
    arguments.add_argument("--seed", type=int, default=0)
    args = arguments.parse_args()
    common: dict[str, object] = {"epochs": 1 if args.smoke else args.epochs, "seed": args.seed, "seeds": (args.seed,)}
    if args.smoke:
        common["overrides"] = {"data.limit": 128, "data.eval_limit": 128}
    grid_only = {"views.params.overlap": [0.3, 0.6]} if args.smoke else {}
    samples = 2 if args.smoke else args.samples
    with tempfile.TemporaryDirectory(prefix="bench-search-") as scratch:
        # the exhaustive grid: ASHA's grace period is the whole run, so it stops no point early
        _, grid = run_sweep(Path(scratch), "grid", grid=True, grid_only=grid_only, grace_period=common["epochs"], **common)
        _, search = run_sweep(Path(scratch), "asha-tpe", num_samples=samples, **common)
    grid_best = max(report.knn_top1 for report in grid)
    target = grid_best - TOLERANCE
    grid_epochs = len(grid)
    rows = []
    for sweep, reports in (("grid (every point, every epoch)", grid), (f"ASHA + TPE ({samples} trials)", search)):
        reached = epochs_to_reach(reports, target)
        rows.append([
            sweep, len({report.trial for report in reports}), len(reports), f"{max(report.knn_top1 for report in reports):.4f}",
            "not reached" if reached is None else str(reached),
            "-" if reached is None else f"{reached / grid_epochs:.2f}",
        ])
    print(f"Search efficiency on bundled digits, overlap space, {common['epochs']} epochs per trial, seed {args.seed}")
    print(f"grid best kNN top-1 {grid_best:.4f}; target: a report of at least {target:.4f}")
    print(table(["sweep", "trials", "epochs trained", "best kNN top-1", "epochs to reach target", "fraction of the grid's epochs"], rows))
    reached = epochs_to_reach(search, target)
    verdict = "met" if reached is not None and reached <= TARGET_FRACTION * grid_epochs else "not met"
    print(f"ASHA + TPE: {'-' if reached is None else reached} of the grid's {grid_epochs} epochs (target <= {TARGET_FRACTION:.0%}: {verdict})")


if __name__ == "__main__":
    main()
