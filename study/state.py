"""The typed record of a sweep, kept in its ``study.json``: the config, the MLflow ids, where it
is in its lifecycle, who drives it, and what it found. Importable without Ray.

:func:`read_state` and :func:`write_state` are the only readers and writers of the file; a
``study.json`` written before this record (no ``best_trial``, no ``driver``) still reads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from study.best import BestTrial
from study.config import Asha, StudyConfig
from study.vocabulary import STATE_FILE
from trainables.validation import ConfigError


class Lifecycle(StrEnum):
    RUNNING = "running"
    INTERRUPTED = "interrupted"
    """Stopped before its trials were done (Ctrl-C, a killed driver): ``study resume`` finishes
    it."""
    FINISHED = "finished"
    FAILED = "failed"


@dataclass(frozen=True)
class Driver:
    """The process that runs a sweep, recorded so that a dead driver can be told from a live one."""

    host: str
    pid: int

    @classmethod
    def this(cls) -> Driver:
        return cls(socket.gethostname(), os.getpid())

    def alive(self) -> bool:
        """Whether it still runs. A driver on another host is assumed alive: only its own host
        can tell."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


@dataclass(frozen=True)
class SweepState:
    """Everything ``study.json`` records of one sweep."""

    name: str
    config: StudyConfig
    """As run: its name, tracking URI, data root and GPUs per trial resolved."""
    experiment_id: str
    parent_run_id: str
    mode: str
    epochs: int
    early_stopping: bool
    asha: Asha
    num_trials: int
    description: str
    created: str
    lifecycle: Lifecycle = Lifecycle.RUNNING
    driver: Driver | None = None
    trials: int | None = None
    """Trials in the results, once exported."""
    best: BestTrial | None = None
    pending_tracking_writes: int = 0
    baselines: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    """:meth:`trainables.baselines.Baselines.rows` of the sweep's baselines."""

    @property
    def live(self) -> bool:
        """Running, by a driver that is still alive."""
        return (
            self.lifecycle is Lifecycle.RUNNING and self.driver is not None and self.driver.alive()
        )

    @property
    def tracking_uri(self) -> str:
        return self.config.tracking_uri

    def replace(self, **changes: Any) -> SweepState:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "config": self.config.to_dict(),
            "tracking": {"experiment_id": self.experiment_id, "parent_run_id": self.parent_run_id},
            "mode": self.mode,
            "epochs": self.epochs,
            "early_stopping": self.early_stopping,
            "asha": self.asha.to_dict(),
            "num_trials": self.num_trials,
            "description": self.description,
            "created": self.created,
            "state": self.lifecycle.value,
            "driver": None if self.driver is None else dataclasses.asdict(self.driver),
            "trials": self.trials,
            "best_knn_top1": None if self.best is None else self.best.knn_top1,
            "best_trial": None if self.best is None else self.best.to_dict(),
            "pending_tracking_writes": self.pending_tracking_writes,
            "baselines": list(self.baselines),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepState:
        config = StudyConfig.from_dict(data["config"])
        epochs = int(data.get("epochs") or 0)
        asha = data.get("asha") or {  # recorded before the ASHA settings were: the config's
            "grace_period": min(config.grace_period, epochs or config.grace_period),
            "reduction_factor": config.reduction_factor,
            "max_t": epochs,
        }
        driver = data.get("driver")
        best = data.get("best_trial")
        return cls(
            name=data["name"],
            config=config,
            experiment_id=data["tracking"]["experiment_id"],
            parent_run_id=data["tracking"]["parent_run_id"],
            mode=data.get("mode", "?"),
            epochs=epochs,
            early_stopping=bool(
                data.get("early_stopping", True)
            ),  # recorded before it could be off: ASHA ran
            asha=Asha(int(asha["grace_period"]), int(asha["reduction_factor"]), int(asha["max_t"])),
            num_trials=int(data.get("num_trials") or 0),
            description=data.get("description", ""),
            created=data.get("created", ""),
            lifecycle=Lifecycle(data.get("state", Lifecycle.RUNNING)),
            driver=None if not driver else Driver(str(driver["host"]), int(driver["pid"])),
            trials=data.get("trials"),
            best=None if not best else BestTrial.from_dict(best),
            pending_tracking_writes=int(data.get("pending_tracking_writes") or 0),
            baselines=tuple(data.get("baselines") or ()),
        )


def write_state(directory: Path, state: SweepState) -> None:
    """Write ``study.json`` atomically (a half-written file never replaces a good one)."""
    partial = directory / (STATE_FILE + ".partial")
    partial.write_text(json.dumps(state.to_dict(), indent=2, default=str))
    partial.replace(directory / STATE_FILE)


def read_state(directory: Path) -> SweepState:
    path = directory / STATE_FILE
    if not path.is_file():
        raise ConfigError(
            "name",
            directory.name,
            f"a sweep under {directory.parent} (no {STATE_FILE} in {directory})",
        )
    return SweepState.from_dict(json.loads(path.read_text()))
