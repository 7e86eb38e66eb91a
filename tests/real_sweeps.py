"""Small real sweeps shared by the tests of the study, the dashboards and the UI.

Each runs on the session's real local Ray cluster (see tests/conftest.py) with real Ray Train
trials, Optuna, ASHA and a real sqlite MLflow store; they are cut to a few seconds of training per
trial.
"""

from __future__ import annotations

from pathlib import Path

from dashboards.gallery import draw_view_pairs
from study import StudyConfig, run_study

QUICK = {"data.limit": 192, "data.eval_limit": 200}
SEARCH_EPOCHS = 3
SEARCH_TRIALS = 4
FIGURE_EPOCHS = 2


def search_sweep(root: Path):
    """TPE over the overlap space on digits; ASHA with reduction factor 4 stops some trials."""
    config = StudyConfig(
        space="overlap",
        dataset="digits",
        num_samples=SEARCH_TRIALS,
        epochs=SEARCH_EPOCHS,
        name="overlap-it",
        storage=str(root / "runs"),
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        grace_period=1,
        reduction_factor=4,
        max_concurrent_trials=2,
        overrides={"data.limit": 512, "data.eval_limit": 300},
    )
    return run_study(config, view_gallery=draw_view_pairs)  # as the CLI runs it


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
