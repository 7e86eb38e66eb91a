"""One stored sweep as one object: its files, its record (``study.json``, a
:class:`~study.state.SweepState`), its plan (resolved once) and its MLflow tracking.

Every command reads and writes a sweep through :class:`Sweep`: ``run`` and ``resume``
(:mod:`study.lifecycle`), ``sync``, ``export``, ``ls`` and ``--repair`` (:mod:`study.stored`),
and the report (:mod:`dashboards.sweeps`). Importable without starting Ray.
"""

from __future__ import annotations

import time
from pathlib import Path

from study.config import StudyConfig, StudyPlan, plan
from study.outbox import Outbox
from study.state import SweepState, read_state, write_state
from study.storage import SweepStorage, pushed
from study.tracking import Tracking
from study.vocabulary import DEFAULT_STORAGE, EPOCHS_FILE, RESULTS_DIR, TRIALS_FILE


class Sweep:
    """A sweep on ``storage``: read with :meth:`open`, made with :meth:`create`, and changed only
    through :meth:`save`, which writes the record at once (atomically)."""

    def __init__(
        self, storage: SweepStorage, state: SweepState, study_plan: StudyPlan | None = None
    ) -> None:
        self.storage = storage
        self.state = state
        self._plan = study_plan

    @classmethod
    def open(cls, name: str, storage: str | Path = DEFAULT_STORAGE) -> Sweep:
        """A stored sweep (pulled into this machine's mirror first, for object storage)."""
        location = SweepStorage(str(storage))
        return cls(location, read_state(location.pull(name)))

    @classmethod
    def create(
        cls, storage: SweepStorage, config: StudyConfig, study_plan: StudyPlan, tracking: Tracking
    ) -> Sweep:
        """The record of a new sweep, written to its (existing) directory."""
        state = SweepState(
            name=study_plan.name,
            config=config,
            experiment_id=tracking.experiment_id,
            parent_run_id=tracking.parent_run_id,
            mode=study_plan.mode,
            epochs=study_plan.epochs,
            early_stopping=study_plan.early_stopping,
            asha=study_plan.asha,
            num_trials=study_plan.num_samples,
            description=study_plan.description,
            created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        )
        sweep = cls(storage, state, study_plan)
        write_state(sweep.directory, state)
        return sweep

    @property
    def name(self) -> str:
        return self.state.name

    @property
    def plan(self) -> StudyPlan:
        """The sweep's plan, resolved from its recorded config on first use."""
        if self._plan is None:
            self._plan = plan(self.state.config)
        return self._plan

    @property
    def directory(self) -> Path:
        return self.storage.directory(self.name)

    @property
    def tracking(self) -> Tracking:
        return Tracking(
            self.state.tracking_uri, self.state.experiment_id, self.state.parent_run_id, self.name
        )

    @property
    def results(self) -> Path:
        return self.directory / RESULTS_DIR

    @property
    def trials_path(self) -> Path:
        return self.results / TRIALS_FILE

    @property
    def epochs_path(self) -> Path:
        return self.results / EPOCHS_FILE

    def outbox(self) -> Outbox:
        return Outbox(self.tracking, self.directory)

    def save(self, **changes: object) -> SweepState:
        """Change the record and write it."""
        self.state = self.state.replace(**changes)
        write_state(self.directory, self.state)
        return self.state

    def reload(self) -> SweepState:
        self.state = read_state(self.directory)
        return self.state

    def push(self) -> None:
        """Copy the driver's files to object storage (a failure is a warning)."""
        pushed(self.storage, self.name)
