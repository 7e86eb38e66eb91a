"""Small real sweeps shared by the tests of the study, the dashboards and the UI.

Each runs on the session's real local Ray cluster (see tests/conftest.py) with real Ray Train
trials, Optuna, ASHA and a real sqlite MLflow store; they are cut to a few seconds of training per
trial.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

from study import StudyConfig, StudyResult, finished_result, run_study
from study_cli.commands import DEMO, main

QUICK = {"data.limit": 192, "data.eval_limit": 200}
SEARCH_EPOCHS = 3
SEARCH_TRIALS = 4
SEARCH_DATASET = DEMO["dataset"]
FIGURE_EPOCHS = 2
# `study demo` cut to the search sweep the tests share: 4 of its TPE trials for 3 epochs on 512 of
# its images (300 for kNN), with ASHA's grace period 1 and reduction factor 4, so that ASHA stops
# some trials within those 3 epochs.
DEMO_BUDGET = {
    "--num-samples": SEARCH_TRIALS,
    "--epochs": SEARCH_EPOCHS,
    "--grace-period": 1,
    "--reduction-factor": 4,
}
DEMO_SET = {"data.limit": 512, "data.eval_limit": 300}


@dataclass(frozen=True)
class DemoRun:
    printed: str
    """What ``study demo`` printed."""
    result: StudyResult
    """Its sweep, read back from the storage the demo wrote."""


def search_sweep(root: Path) -> DemoRun:
    """``study demo`` as the README runs it, with the budget above: TPE over the overlap space on
    the bundled patterns, ASHA, a real sqlite MLflow store, the report after the sweep."""
    storage = root / "runs"
    argv = ["demo", "--storage", str(storage), "--tracking-uri", f"sqlite:///{root / 'mlflow.db'}"]
    argv += [str(each) for flag, value in DEMO_BUDGET.items() for each in (flag, value)]
    argv += [each for key, value in DEMO_SET.items() for each in ("--set", f"{key}={value}")]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(argv)
    assert code == 0, printed.getvalue()
    name = re.search(r"^sweep (\S+): ", printed.getvalue(), re.MULTILINE)[1]
    return DemoRun(printed.getvalue(), finished_result(name, storage))


FIGURE_SWEEPS = {
    # name: StudyConfig fields; grids run every point and seed to the last epoch (no early
    # stopping by default), and the report checks the ranking at the grace period ASHA would use
    # (epoch 1).
    "overlap-digits": dict(
        dataset="digits",
        space="overlap",
        grid=True,
        seeds=(0, 1),
        grid_only={"views.params.overlap": [0.3, 0.7]},
    ),
    "overlap-scenes": dict(
        space="overlap",
        grid=True,
        dataset="digit-scenes",
        eval_dataset="digits",
        grid_only={"views.params.overlap": [0.3, 0.7]},
    ),
    "patch-digits": dict(
        dataset="digits", space="patch", grid=True, grid_only={"views.params.patch": [0.3, 0.7]}
    ),
    "exclusive-digits": dict(
        dataset="digits", space="exclusive", grid=True, grid_only={"views.params.gap": [0.02, 0.1]}
    ),
    "cutout-digits": dict(
        dataset="digits", space="cutout", grid=True, grid_only={"views.params.hole": [0.5]}
    ),
    "margin-scenes": dict(preset="fig5-margin-bundled", seeds=(0,), grid_only={"seed": [0]}),
}


def figure_sweeps(root: Path) -> dict:
    """One small grid per paper figure, run one after another on the local Ray cluster."""
    return {
        name: run_study(
            StudyConfig(
                **fields,
                name=name,
                epochs=FIGURE_EPOCHS,
                overrides=dict(QUICK),
                max_concurrent_trials=2,
                storage=str(root / "runs"),
                tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
            )
        )
        for name, fields in FIGURE_SWEEPS.items()
    }
