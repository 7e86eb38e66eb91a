"""What a sweep's driver prints. By default: Tune's progress table every
:data:`HEARTBEAT_S` and at the end, one line per trial event (started with its parameters,
stopped by ASHA, finished with its kNN, failed with its error) and warnings. Tune's per-trial
config and result boxes, Ray Train's per-report and per-checkpoint lines, the output of Ray
Train's own actors and Tune's hint to call ``Tuner.restore`` are left out: the boxes are in each
trial's ``result.json``, the rest in the Ray session's ``logs/`` (``logs/train/`` for Train's).
``verbose`` keeps Tune's and Ray's own output.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ray.tune import Callback
from ray.tune.experimental.output import AirVerbosity, TuneTerminalReporter

from study.callbacks import read_error
from study.vocabulary import EPOCH, KNN_TOP1, LOSS, Outcome, stop_reason_of

HEARTBEAT_S = 30.0
TABLE_METRICS = (EPOCH, LOSS, KNN_TOP1)
TRAIN_LOG_LEVEL = {False: "WARNING", True: "INFO"}
"""Ray Train's console level in the trial workers, by ``verbose``."""
TUNE_VERBOSITY = {False: AirVerbosity.SILENT, True: AirVerbosity.DEFAULT}
"""Tune's own console output, by ``verbose`` (silent: :class:`TrialConsole` prints instead)."""
SUPERSEDED_TUNE_WARNINGS = (
    "Stop signal received",
    "Experiment has been interrupted",
    "Trials did not complete",
)
"""Tune's messages on an interrupt, which tell a user of ``Tuner`` what to do: the study says it
in its own words (:mod:`study.interrupt`)."""
TUNE_LOGGER = "ray.tune.tune"
RAY_SYSTEM_ACTORS = frozenset({"TrainController", "PlacementGroupCleaner"})
"""Ray Train's own actors: their output (scheduling, clean-up, internal retries and timeouts)
stays in the Ray session's logs; a trial they fail is reported by Tune, and so here."""
RAY_LOG_HANDLER = "ray_print_logs"
"""The name under which ``ray.init`` forwards the worker processes' output to the driver."""


class ProgressTable(TuneTerminalReporter):
    """Tune's progress table (trial counts by status, the best trial so far, a row per trial)
    with the study's columns; used to draw the table only, not as Tune's reporter."""

    def __init__(self, metric: str, mode: str, num_samples: int) -> None:
        super().__init__(AirVerbosity.DEFAULT, num_samples=num_samples, metric=metric, mode=mode)
        self._inferred_metric = list(TABLE_METRICS)
        self._heartbeat_freq = HEARTBEAT_S

    def _get_heartbeat(self, trials: list, *sys_args: Any, force_full_output: bool = False):
        # A define-by-run space names its parameters only in the trials' configs.
        self._inferred_params = sorted({key for trial in trials for key in trial.config})
        return super()._get_heartbeat(trials, *sys_args, force_full_output=force_full_output)


def describe_start(trial: Any) -> str:
    parameters = ", ".join(f"{key}={value}" for key, value in sorted(trial.config.items()))
    return f"trial {trial.trial_id} started: {parameters or 'the base config'}"


def describe_end(trial: Any, max_epochs: int) -> str:
    last = trial.last_result or {}
    outcome = Outcome.of_result(trial.last_result, max_epochs)
    epoch = int(last.get(EPOCH, 0))
    score = f"{KNN_TOP1}={last[KNN_TOP1]:.4f}" if KNN_TOP1 in last else f"no {KNN_TOP1}"
    if outcome is Outcome.FINISHED:
        return f"trial {trial.trial_id} finished: {score} after {epoch} epochs"
    if outcome is Outcome.STOPPED:
        return f"trial {trial.trial_id} stopped by ASHA after epoch {epoch}: {score}"
    return (
        f"trial {trial.trial_id} {outcome.lower()} at epoch {epoch}: {stop_reason_of(last)} "
        f"({score})"
    )


def describe_error(trial: Any, error_text: str) -> str:
    lines = [line for line in error_text.strip().splitlines() if line.strip()]
    last = lines[-1].strip() if lines else "no error message"
    where = getattr(trial, "error_file", None)
    return f"trial {trial.trial_id} failed: {last}" + (f" (traceback: {where})" if where else "")


class TrialConsole(Callback):
    """One line per trial event, and Tune's progress table every :data:`HEARTBEAT_S` (the table
    only when ``table``: with Tune's own output on, Tune draws it)."""

    def __init__(
        self, metric: str, mode: str, num_samples: int, max_epochs: int, table: bool = True
    ) -> None:
        self.max_epochs = max_epochs
        self.table = ProgressTable(metric, mode, num_samples) if table else None

    def setup(self, total_num_samples: int | None = None, **info: Any) -> None:
        if self.table is not None:
            self.table.setup(start_time=time.time(), total_samples=total_num_samples)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if self.table is not None:
            self.table.print_heartbeat(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self.table is not None:
            self.table.print_heartbeat(trials, force=True)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(describe_start(trial), flush=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(describe_end(trial, self.max_epochs), flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:

        print(describe_error(trial, read_error(trial)), flush=True)


class _Superseded(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.startswith(prefix) for prefix in SUPERSEDED_TUNE_WARNINGS)


SUPERSEDED = _Superseded()


def configure_console(verbose: bool) -> None:
    """The driver's console for a sweep on the Ray this process is connected to."""
    quiet_tune_hints(verbose)
    if not verbose:
        quiet_ray_system_output()


def concise_batch(batch: dict[str, Any]) -> dict[str, Any] | None:
    """A batch of a worker process's output lines as the concise console shows it (None: not at
    all): none of Ray Train's own actors'; the training workers' and the raylet's as they are
    (the raylet's warnings, such as workers killed for lack of memory, matter)."""
    return None if batch.get("actor_name") in RAY_SYSTEM_ACTORS else batch


def quiet_ray_system_output() -> None:
    """Filter what Ray forwards from the worker processes through :func:`concise_batch`; until
    ``ray.shutdown`` (which drops the handler), idempotent."""
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    forward = dict(dispatcher.handlers).get(RAY_LOG_HANDLER)
    if forward is None or getattr(forward, "concise", False):
        return

    def concise(batch: dict[str, Any]) -> None:
        shown = concise_batch(batch)
        if shown is not None:
            forward(shown)

    concise.concise = True
    dispatcher.remove_handler(RAY_LOG_HANDLER)
    dispatcher.add_handler(RAY_LOG_HANDLER, concise)


def quiet_tune_hints(verbose: bool) -> None:
    """Leave out Tune's interrupt messages (unless ``verbose``); idempotent."""
    tune_logger = logging.getLogger(TUNE_LOGGER)
    tune_logger.removeFilter(SUPERSEDED)
    if not verbose:
        tune_logger.addFilter(SUPERSEDED)
