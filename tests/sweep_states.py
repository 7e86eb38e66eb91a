"""Sweep records written by hand, as a driver in a given condition leaves them."""

from __future__ import annotations

from typing import Any

from study.config import Asha, StudyConfig
from study.state import Driver, Lifecycle, SweepState


def sweep_state(
    name: str,
    tracking_uri: str = "sqlite:///mlflow.db",
    experiment_id: str = "0",
    parent_run_id: str = "parent",
    **changes: Any,
) -> SweepState:
    """A two-epoch overlap search's record, with ``changes`` applied."""
    config = StudyConfig(space="overlap", name=name, tracking_uri=tracking_uri)
    state = SweepState(
        name=name,
        config=config,
        experiment_id=experiment_id,
        parent_run_id=parent_run_id,
        mode="search",
        epochs=2,
        early_stopping=True,
        asha=Asha(1, 2, 2),
        num_trials=2,
        description="",
        created="",
    )
    return state.replace(**changes)


__all__ = ["Driver", "Lifecycle", "sweep_state"]
