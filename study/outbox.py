"""MLflow writes of a sweep driver that survive the tracking server dropping out.

Every write the driver makes during a sweep (a trial's epoch metrics, its checkpoint artifacts,
its terminal status, the parent run's summary) is an *operation*: a JSON-able dict applied by
one small function of :data:`APPLY`. :class:`Outbox` applies it at once when the store answers;
when it does not, the operation is kept, in order, in ``tracking-outbox.jsonl`` in the sweep
directory and replayed before the next write, when the sweep ends, and by ``study sync NAME``
after it. Training never waits for MLflow: a failing write gives up after one quick attempt.
Operations name trials by Tune trial id, so a run that could not be created while the server
was away is created on replay.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from study.tracking import Tracking, close_open_children, log_checkpoint_artifacts
from study.vocabulary import OUTBOX_FILE

logger = logging.getLogger(__name__)

RETRY_EVERY_S = 10.0
TRANSIENT_CODES = {
    "INTERNAL_ERROR",
    "TEMPORARILY_UNAVAILABLE",
    "REQUEST_LIMIT_EXCEEDED",
    "DEADLINE_EXCEEDED",
}
QUICK_FAIL_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


@contextlib.contextmanager
def quick_failing() -> Iterator[None]:
    """MLflow HTTP requests fail after one attempt instead of retrying for minutes."""
    saved = {key: os.environ.get(key) for key in QUICK_FAIL_ENV}
    os.environ.update(QUICK_FAIL_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def unavailable(error: BaseException) -> bool:
    """The store did not answer (a write to retry later), as opposed to refusing the write."""
    if isinstance(error, MlflowException):
        return error.error_code in TRANSIENT_CODES
    return isinstance(error, OSError)


class Writer:
    """Applies operations to one sweep's MLflow runs, remembering run ids and logged steps."""

    def __init__(self, tracking: Tracking) -> None:
        self.tracking = tracking
        self.runs: dict[str, str] = {}
        self.last_steps: dict[str, int] = {}

    @property
    def client(self) -> MlflowClient:
        return self.tracking.client()

    def run_id(self, operation: dict[str, Any]) -> str:
        trial_id = operation.get("trial")
        if trial_id is None:
            return self.tracking.parent_run_id
        if trial_id not in self.runs:
            self.runs[trial_id] = self.tracking.trial_run(
                trial_id, operation.get("name") or trial_id
            )
        return self.runs[trial_id]

    def last_step(self, run_id: str, metric: str) -> int:
        if run_id not in self.last_steps:
            self.last_steps[run_id] = max(
                (point.step for point in self.client.get_metric_history(run_id, metric)), default=0
            )
        return self.last_steps[run_id]


def _metrics(writer: Writer, operation: dict[str, Any]) -> None:
    """An epoch's metrics, logged once: a step at or below the run's last logged one (an epoch
    trained again after a restart, or re-reported by a resumed sweep) keeps its first record."""
    run_id = writer.run_id(operation)
    step = int(operation["step"])
    if step <= writer.last_step(run_id, operation["once_by"]):
        return
    metrics = [
        Metric(key, float(value), int(operation["timestamp"]), step)
        for key, value in operation["metrics"].items()
    ]
    writer.client.log_batch(run_id, metrics=metrics)
    writer.last_steps[run_id] = step


def _log(writer: Writer, operation: dict[str, Any]) -> None:
    """Metrics (step 0), tags and params; params the run already has are left as they are."""
    run_id = writer.run_id(operation)
    timestamp = int(operation.get("timestamp", time.time() * 1000))
    existing = writer.client.get_run(run_id).data.params if operation.get("params") else {}
    metrics = [
        Metric(key, float(value), timestamp, 0)
        for key, value in operation.get("metrics", {}).items()
    ]
    params = [
        Param(key, value)
        for key, value in operation.get("params", {}).items()
        if key not in existing
    ]
    tags = [RunTag(key, value) for key, value in operation.get("tags", {}).items()]
    if metrics or params or tags:
        writer.client.log_batch(run_id, metrics=metrics, params=params, tags=tags)


def _points(writer: Writer, operation: dict[str, Any]) -> None:
    """Metric points at given steps (``points``: ``[key, value, step]``), each logged once: a
    replayed write leaves the points the run already has at that step."""
    run_id = writer.run_id(operation)
    timestamp = int(operation.get("timestamp", time.time() * 1000))
    keys = {key for key, _, _ in operation["points"]}
    logged = {
        (key, point.step) for key in keys for point in writer.client.get_metric_history(run_id, key)
    }
    metrics = [
        Metric(key, float(value), timestamp, int(step))
        for key, value, step in operation["points"]
        if (key, int(step)) not in logged
    ]
    if metrics:
        writer.client.log_batch(run_id, metrics=metrics)


def _finished(writer: Writer, run_id: str) -> bool:
    return writer.client.get_run(run_id).info.status == RunStatus.to_string(RunStatus.FINISHED)


def _artifacts(writer: Writer, operation: dict[str, Any]) -> None:
    run_id = writer.run_id(operation)
    for path in operation["paths"]:
        if Path(path).exists():
            writer.client.log_artifact(run_id, path, operation.get("artifact_path"))
        else:
            logger.warning("not logging %s to MLflow run %s: the file is gone", path, run_id)


def _checkpoint_artifacts(writer: Writer, operation: dict[str, Any]) -> None:
    run_id = writer.run_id(operation)
    if not _finished(writer, run_id):
        log_checkpoint_artifacts(
            writer.client,
            run_id,
            operation["checkpoint"],
            operation["backbone"],
            operation.get("storage"),
        )


def _close(writer: Writer, operation: dict[str, Any]) -> None:
    """A run's terminal status; a run that already FINISHED (before an interrupted sweep was
    resumed) is left as it is, tags included."""
    run_id = writer.run_id(operation)
    if operation.get("keep_finished", True) and _finished(writer, run_id):
        return
    if operation.get("tags"):
        writer.client.log_batch(
            run_id, tags=[RunTag(key, value) for key, value in operation["tags"].items()]
        )
    writer.client.set_terminated(run_id, operation["status"])


def _close_open_children(writer: Writer, operation: dict[str, Any]) -> None:
    close_open_children(writer.tracking, operation["status"], operation.get("tags"))


APPLY: dict[str, Callable[[Writer, dict[str, Any]], None]] = {
    "metrics": _metrics,
    "log": _log,
    "points": _points,
    "artifacts": _artifacts,
    "checkpoint_artifacts": _checkpoint_artifacts,
    "close": _close,
    "close_open_children": _close_open_children,
}


class Outbox:
    """Applies operations now if MLflow answers, else journals them for later; never raises for
    an unreachable store. A write MLflow refuses (a bad value) is logged and dropped.

    The journal file is the only state kept, so the copy of the callback that Tune pickles with
    the experiment, and restores with it, shares it with the resumed driver."""

    def __init__(
        self, tracking: Tracking, directory: Path | str, retry_every_s: float = RETRY_EVERY_S
    ) -> None:
        self.writer = Writer(tracking)
        self.path = Path(directory) / OUTBOX_FILE
        self.retry_every_s = retry_every_s
        self._next_try = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "writer": Writer(self.writer.tracking), "_next_try": 0.0}

    @property
    def pending(self) -> list[dict[str, Any]]:
        return read_outbox(self.path)

    def submit(self, kind: str, **operation: Any) -> bool:
        """Apply (or keep) one operation; True if MLflow has it now."""
        if kind not in APPLY:
            raise ValueError(
                f"unknown tracking operation {kind!r}: expected one of {sorted(APPLY)}"
            )
        operation = {"op": kind, **operation}
        if self.flush() and self._apply(operation):
            return True
        self._append(operation)
        return False

    def flush(self, force: bool = False) -> bool:
        """Replay kept operations in order; True when none is left. After a failure, tries
        again only every ``retry_every_s`` unless ``force``."""
        pending = self.pending
        if not pending:
            return True
        if not force and time.monotonic() < self._next_try:
            return False
        while pending:
            if not self._apply(pending[0]):
                return False
            pending.pop(0)
            self._save(pending)
        logger.warning("MLflow answers again: every kept tracking write has been replayed")
        return True

    def _apply(self, operation: dict[str, Any]) -> bool:
        try:
            with quick_failing():
                APPLY[operation["op"]](self.writer, operation)
        except Exception as error:
            if unavailable(error):
                logger.warning(
                    "MLflow did not answer (%s); keeping the %s write for later",
                    str(error)[:200],
                    operation["op"],
                )
                self._next_try = time.monotonic() + self.retry_every_s
                return False
            logger.error("MLflow refused a %s write, dropped: %s", operation["op"], error)
        return True

    def _append(self, operation: dict[str, Any]) -> None:
        """Keep one more operation: a line appended to the journal (flushed to disk)."""
        with self.path.open("a+b") as journal:
            size = journal.seek(0, os.SEEK_END)
            if size and journal.seek(size - 1) is not None and journal.read(1) != b"\n":
                journal.write(b"\n")  # after a line cut short by a kill, start a whole one
            journal.write((json.dumps(operation) + "\n").encode())
            journal.flush()
            os.fsync(journal.fileno())

    def _save(self, pending: list[dict[str, Any]]) -> None:
        if not pending:
            self.path.unlink(missing_ok=True)
            return
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text("".join(json.dumps(operation) + "\n" for operation in pending))
        scratch.replace(self.path)


def or_else(read: Callable[[], Any], fallback: Any, what: str) -> Any:
    """``read()`` from MLflow, or ``fallback`` if the store does not answer."""
    try:
        with quick_failing():
            return read()
    except Exception as error:
        if not unavailable(error):
            raise
        logger.warning(
            "MLflow did not answer while reading %s (%s); going on without it",
            what,
            str(error)[:200],
        )
        return fallback


def read_outbox(path: Path) -> list[dict[str, Any]]:
    """The journal's operations in order. A line cut short (the driver killed while appending
    it; the next append starts a new line) is left out with a warning."""
    if not path.is_file():
        return []
    operations = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            operations.append(json.loads(line))
        except json.JSONDecodeError:
            logger.warning(
                "a line of %s is cut short (its driver was killed while writing it): left out", path
            )
    return operations
