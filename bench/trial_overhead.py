"""Benchmark 4: trial overhead, from Tune starting a trial to its first report, less training.

Runs a real sweep on a local Ray cluster (bundled digits, one epoch per trial, one trial at a
time) with ``$STUDY_TIMELINE`` set, so that the sweep driver, each trial function and its Train
worker mark their phases in one file (:mod:`trainables.timeline`). For every trial it prints where
the time between ``trial.start`` (Tune's callback on the driver) and the first result reaching
the driver went, and the overhead: that span less the epoch's training and kNN compute.
Target on CPU: at most 8 s.

Side by side, on the same Ray cluster, the same number of Tune trials each run a TorchTrainer
whose workers only report: Ray's own floor for a Tune trial that is a Train run, which no
change to this platform can go below.

    .venv/bin/python -m bench.trial_overhead [--trials 4] [--smoke]
"""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path

import ray
from ray import tune
from ray.train import RunConfig

from bench.common import parser, table
from trainables.ray_trainable import (
    POLL_INTERVAL_VARIABLE,
    ScalingSpec,
    TrainerSpec,
    environment_variable,
)
from trainables.timeline import TIMELINE_VARIABLE, mark, read

TARGET_SECONDS = 8.0
PHASES = (
    # (column, from mark, to mark); compute spans are subtracted from the total
    ("Tune worker start + imports", "trial.start", "trial.enter"),
    ("MLflow run, params, gallery", "trial.enter", "trial.tracked"),
    ("TorchTrainer up to the worker loop", "trial.tracked", "worker.enter"),
    ("model", "worker.enter", "model.built"),
    ("datasets", "model.built", "data.ready"),
    ("checkpoint", "epoch.evaluated", "epoch.saved"),
    ("report to Train", "epoch.saved", "epoch.reported"),
    ("Train to Tune to driver", "epoch.reported", "trial.result"),
)
FLOOR_MARK = "bench.floor"
COMPUTE = (("epoch.start", "epoch.trained"), ("epoch.trained", "epoch.evaluated"))


def trial_timelines(entries: list[dict]) -> list[dict[str, float]]:
    """The first time of each phase mark, per trial, in the order the trials started (trials
    run one at a time, so every mark between two ``trial.start`` belongs to the first)."""
    trials: list[dict[str, float]] = []
    for entry in entries:
        if entry["phase"] == "trial.start":
            trials.append({})
        if trials:
            trials[-1].setdefault(entry["phase"], entry["time"])
    return trials


def overhead_row(marks: dict[str, float]) -> dict[str, float]:
    row = {name: marks[end] - marks[start] for name, start, end in PHASES}
    row["compute (excluded)"] = sum(marks[end] - marks[start] for start, end in COMPUTE)
    row["start to first report"] = marks["trial.result"] - marks["trial.start"]
    row["overhead"] = row["start to first report"] - row["compute (excluded)"]
    return row


def run_sweep(directory: Path, trials: int, smoke: bool) -> None:
    from study.config import StudyConfig
    from study.lifecycle import run_study

    limit = 64 if smoke else 512
    run_study(
        StudyConfig(
            space="overlap",
            dataset="digits",
            num_samples=trials,
            epochs=1,
            max_concurrent_trials=1,
            overrides={"data.limit": limit, "data.eval_limit": limit},
            name="trial-overhead",
            storage=str(directory / "runs"),
            tracking_uri=f"sqlite:///{directory / 'mlflow.db'}",
        )
    )


def empty_loop(config: dict) -> None:
    import ray.train

    mark("worker.enter")
    ray.train.report({"epoch": 1})


def empty_trial(config: dict) -> None:
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    mark("trial.enter")
    trainer = TorchTrainer(
        empty_loop,
        scaling_config=ScalingSpec().scaling_config(),
        run_config=RunConfig(
            name=f"empty-{tune.get_context().get_trial_id()}",
            storage_path=config["storage"],
            callbacks=[TuneReportCallback()],
        ),
    )
    mark("trial.tracked")
    with environment_variable(POLL_INTERVAL_VARIABLE, str(TrainerSpec().poll_interval_s)):
        trainer.fit()


def run_floor(directory: Path, trials: int) -> None:
    """Tune trials that each run a TorchTrainer doing nothing but one report."""
    from study.callbacks import TimelineCallback
    from study.tuner import TRIAL_DRIVER_MEMORY

    tune.Tuner(
        tune.with_resources(empty_trial, {"cpu": 0, "memory": TRIAL_DRIVER_MEMORY}),
        param_space={"storage": str(directory / "floor")},
        tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=1),
        run_config=tune.RunConfig(
            storage_path=str(directory / "floor"), callbacks=[TimelineCallback()]
        ),
    ).fit()


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--trials", type=int, default=4)
    args = arguments.parse_args()
    trials = 2 if args.smoke else args.trials
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as scratch:
        timeline = Path(scratch) / "timeline.jsonl"
        # before Ray starts, so that its workers inherit it
        os.environ[TIMELINE_VARIABLE] = str(timeline)
        # as `study run` starts it
        ray.init(include_dashboard=True, dashboard_host="127.0.0.1", configure_logging=False)
        try:
            run_sweep(Path(scratch), trials, args.smoke)
            mark(FLOOR_MARK)
            run_floor(Path(scratch), trials)
        finally:
            ray.shutdown()
        entries = read(timeline)
    split = next(index for index, entry in enumerate(entries) if entry["phase"] == FLOOR_MARK)
    rows = [overhead_row(marks) for marks in trial_timelines(entries[:split])]
    floor = [
        marks["trial.result"] - marks["trial.start"] for marks in trial_timelines(entries[split:])
    ]
    phases = list(rows[0])
    median = {phase: statistics.median(row[phase] for row in rows) for phase in phases}
    print(
        f"Trial overhead on local Ray: {trials} one-epoch trials on digits, one at a time (seconds)"
    )
    print(
        table(
            ["phase", *(f"trial {index + 1}" for index in range(len(rows))), "median"],
            [
                [phase, *(f"{row[phase]:.2f}" for row in rows), f"{median[phase]:.2f}"]
                for phase in phases
            ],
        )
    )
    floor_median = statistics.median(floor)
    print(
        "\nSide by side: the same Tune + Train path with an empty training loop (Ray's floor), "
        f"{trials} trials (seconds)"
    )
    print(
        table(
            [
                "trial",
                "start to first report: ours, less compute",
                "start to first report: empty TorchTrainer",
                "ours / floor",
            ],
            [
                [
                    str(index + 1),
                    f"{row['overhead']:.2f}",
                    f"{empty:.2f}",
                    f"{row['overhead'] / empty:.2f}",
                ]
                for index, (row, empty) in enumerate(zip(rows, floor))
            ]
            + [
                [
                    "median",
                    f"{median['overhead']:.2f}",
                    f"{floor_median:.2f}",
                    f"{median['overhead'] / floor_median:.2f}",
                ]
            ],
        )
    )
    verdict = "met" if median["overhead"] <= TARGET_SECONDS else "not met"
    print(f"Ray's floor (empty TorchTrainer in a Tune trial): median {floor_median:.2f} s")
    print(
        f"median overhead {median['overhead']:.2f} s (target <= {TARGET_SECONDS:.0f} s: {verdict})"
    )


if __name__ == "__main__":
    main()
