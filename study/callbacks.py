"""The Tune callbacks of a sweep's driver: the MLflow callback (epoch metrics, checkpoint
artifacts and each trial run's terminal status, written through the sweep's outbox), the
timeline callback, and the callback that pushes the driver's files to object storage."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY

from study.outbox import Outbox
from study.storage import SweepStorage, pushed
from study.tracking import MAX_PARAM_LENGTH, as_params, metrics_of
from study.vocabulary import (
    EPOCH,
    ERROR_TAG,
    EVERY_EPOCH_METRIC,
    NODES_TAG,
    STOP_REASON_TAG,
    STOPPED_AT_TAG,
    STOPPED_BY_TAG,
    Outcome,
    stop_reason_of,
)
from trainables.config import TrainConfig
from trainables.ray_trainable import NODES_KEY
from trainables.timeline import mark

logger = logging.getLogger(__name__)


def read_error(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    if path and Path(path).is_file():
        return Path(path).read_text()[-4000:]
    return "trial failed (no error file)"


class MlflowTrialCallback(tune.Callback):
    """Per-epoch metrics and the terminal status of each trial's child run (FINISHED, KILLED
    with ``study.stopped_by=asha``, FAILED with ``study.stopped_by`` diverged or collapsed and
    ``study.stop_reason``, or FAILED with ``study.error``: :class:`~study.vocabulary.Outcome`),
    written through the sweep's :class:`~study.outbox.Outbox` so that a tracking server that
    drops out never stops the sweep."""

    def __init__(
        self,
        outbox: Outbox,
        max_epochs: int,
        base_config: dict[str, Any],
        storage: str | None = None,
    ) -> None:
        self.outbox = outbox
        self.max_epochs = max_epochs
        self.base_config = base_config
        self.storage = storage
        self.nodes: dict[str, list[str]] = {}

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        step = int(result.get(EPOCH, result.get("training_iteration", 0)))
        metrics = {metric.key: metric.value for metric in metrics_of(result, step, 0)}
        self.outbox.submit(
            "metrics",
            trial=trial.trial_id,
            name=str(trial),
            step=step,
            once_by=EVERY_EPOCH_METRIC,
            metrics=metrics,
            timestamp=int(time.time() * 1000),
        )
        self._tag_nodes(trial, str(result.get(NODES_KEY) or ""))

    def _tag_nodes(self, trial: Any, reported: str) -> None:
        """``study.nodes``: every Ray node the trial's workers ran on, updated when it moves."""
        seen = self.nodes.setdefault(trial.trial_id, [])
        new = [node for node in reported.split(",") if node and node not in seen]
        if new:
            seen.extend(new)
            self.outbox.submit(
                "log", trial=trial.trial_id, name=str(trial), tags={NODES_TAG: ",".join(seen)}
            )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        outcome = Outcome.of_result(trial.last_result, self.max_epochs)
        self._ensure_params(trial)
        if last.get(CHECKPOINT_PATH_KEY):
            self.outbox.submit(
                "checkpoint_artifacts",
                trial=trial.trial_id,
                name=str(trial),
                checkpoint=last[CHECKPOINT_PATH_KEY],
                backbone=outcome is Outcome.FINISHED,
                storage=self.storage,
            )
        tags = {STOPPED_BY_TAG: outcome.stopped_by} if outcome.stopped_by else {}
        if outcome is Outcome.STOPPED:
            tags[STOPPED_AT_TAG] = str(int(last.get(EPOCH, 0)))
        elif outcome in (Outcome.DIVERGED, Outcome.COLLAPSED):
            tags[STOP_REASON_TAG] = stop_reason_of(last)
        self.outbox.submit(
            "close", trial=trial.trial_id, name=str(trial), status=outcome.run_status, tags=tags
        )

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ensure_params(trial)
        self.outbox.submit(
            "close",
            trial=trial.trial_id,
            name=str(trial),
            status=Outcome.FAILED.run_status,
            tags={ERROR_TAG: read_error(trial)[:MAX_PARAM_LENGTH]},
        )

    def _ensure_params(self, trial: Any) -> None:
        """The trial's params, in case its own start-up logging met an unreachable server
        (params already logged are left as they are)."""
        config = TrainConfig.from_dict(self.base_config).replace(**trial.config)
        params = {param.key: param.value for param in as_params(config.to_dict())}
        self.outbox.submit("log", trial=trial.trial_id, name=str(trial), params=params)


class TimelineCallback(tune.Callback):
    """Marks when Tune starts each trial and when its results arrive (the driver's side of the
    trial timeline; see :mod:`trainables.timeline`)."""

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        mark("trial.start", trial=trial.trial_id)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        mark("trial.result", trial=trial.trial_id, epoch=result.get(EPOCH))


class PushCallback(tune.Callback):
    """Pushes the driver's files (study state, Optuna RDB, outbox) to object storage whenever a
    trial ends, so that another machine can resume the sweep from there."""

    def __init__(self, location: str, name: str) -> None:
        self.storage = SweepStorage(location)
        self.name = name

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.storage.is_uri:
            pushed(self.storage, self.name)

    on_trial_error = on_trial_complete
