"""A Ray Train worker SIGKILLed mid-trial: Train's FailureConfig restarts the worker group from the
last checkpoint and the trial finishes. Real local Ray, real MLflow store, a real SIGKILL.

Parquet keeps one row per epoch and MLflow one point per step, so they cannot tell a resume from
a restart from scratch; the workers' own timeline (``trainables.timeline``, inherited by every
process of the local Ray) can: it says which checkpoint the restarted worker loaded and which
epoch it trained first."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray
from mlflow.tracking import MlflowClient

from study import StudyConfig, run_study
from trainables.timeline import TIMELINE_VARIABLE, read

pytestmark = pytest.mark.ray

EPOCHS = 4
KILL_AFTER_EPOCH = 2
RESTART_TIMEOUT_S = 120
RESTART_POLL_S = 0.2
"""A replacement worker takes seconds (imports, model, data, an epoch) to register anything."""
SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"
"""Train's controller rewrites it (per Train run) as each checkpoint registers."""


def train_workers() -> list[int]:
    """PIDs of the Ray Train worker actors on this machine (Ray names their processes)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"RayTrainWorker" in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


def latest_checkpoints(train_root: Path) -> dict[str, tuple[str, int]]:
    """Trial id -> (directory name, epoch) of the latest checkpoint Train has registered for it:
    what a restarted worker group gets from ``ray.train.get_checkpoint()``."""
    found = {}
    for snapshot in train_root.glob(f"trial-*/{SNAPSHOT_FILE}"):
        try:
            latest = json.loads(snapshot.read_text())["latest_checkpoint_result"]
        except (OSError, ValueError, KeyError):  # being rewritten
            continue
        if latest:
            found[snapshot.parent.name.removeprefix("trial-")] = (
                latest["checkpoint_dir_name"],
                latest["metrics"]["epoch"],
            )
    return found


class KillWorkerAfterEpoch(threading.Thread):
    """Watches the trial's MLflow run; once ``epoch`` is logged, SIGKILLs the Train worker. Given
    ``train_root``, it then waits for the replacement worker and records the latest checkpoint
    Train had registered when it restarted the group (``checkpointed``)."""

    def __init__(self, tracking_uri: str, epoch: int, train_root: Path | None = None) -> None:
        super().__init__(daemon=True)
        self.client = MlflowClient(tracking_uri)
        self.epoch = epoch
        self.train_root = train_root
        self.killed: list[int] = []
        self.checkpointed: dict[str, tuple[str, int]] | None = None
        self.done = threading.Event()

    def before_kill(self) -> None:
        """A further fault to inject just before the kill (none here)."""

    def run(self) -> None:
        while not self.done.is_set() and not self.killed:
            experiments = [
                experiment.experiment_id for experiment in self.client.search_experiments()
            ]
            runs = (
                self.client.search_runs(experiments, filter_string="tags.`study.role` = 'trial'")
                if experiments
                else []
            )
            for run in runs:
                steps = [
                    metric.step for metric in self.client.get_metric_history(run.info.run_id, "lr")
                ]
                if self.epoch in steps:
                    time.sleep(0.5)  # into the next epoch
                    self.before_kill()
                    for pid in train_workers():
                        os.kill(pid, signal.SIGKILL)
                        self.killed.append(pid)
            time.sleep(0.3)
        if self.killed and self.train_root is not None:
            self.record_checkpoint_at_restart()

    def record_checkpoint_at_restart(self) -> None:
        """Once a new worker runs, the controller has handled the failure and handed the group the
        latest checkpoint it had: no result of the killed worker can register after that, and the
        new worker registers nothing before it has loaded it and trained an epoch."""
        deadline = time.monotonic() + RESTART_TIMEOUT_S
        while not self.done.is_set() and time.monotonic() < deadline:
            if set(train_workers()) - set(self.killed):
                self.checkpointed = latest_checkpoints(self.train_root)
                return
            time.sleep(RESTART_POLL_S)


def train_processes(timeline: list[dict]) -> dict[int, list[dict]]:
    """Each process that ran ``trainables.train.train`` (it marks ``model.built`` first) -> its
    marks, in the order the processes started."""
    marks: dict[int, list[dict]] = {}
    for entry in timeline:
        if entry["phase"] == "model.built":
            marks.setdefault(entry["pid"], [])
    for entry in timeline:
        if entry["pid"] in marks:
            marks[entry["pid"]].append(entry)
    return marks


def epochs_marked(marks: list[dict], phase: str) -> list[int]:
    return [entry["epoch"] for entry in marks if entry["phase"] == phase]


@pytest.fixture(scope="module")
def survived(tmp_path_factory):
    assert not ray.is_initialized(), "the workers must inherit STUDY_TIMELINE from a fresh Ray"
    root = tmp_path_factory.mktemp("worker-killed")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    timeline = root / "timeline.jsonl"
    config = StudyConfig(
        space="overlap",
        grid=True,
        grid_only={"views.params.overlap": [0.5]},
        epochs=EPOCHS,
        grace_period=EPOCHS,
        overrides={"data.limit": 640, "data.eval_limit": 200},
        name="worker-killed",
        max_failures=2,
        storage=str(root / "runs"),
        tracking_uri=uri,
    )
    killer = KillWorkerAfterEpoch(uri, KILL_AFTER_EPOCH, root / "runs" / "worker-killed" / "train")
    killer.start()
    try:
        with pytest.MonkeyPatch.context() as environment:
            environment.setenv(TIMELINE_VARIABLE, str(timeline))
            result = run_study(config)
    finally:
        killer.done.set()
        killer.join()
    return result, killer, MlflowClient(result.tracking.tracking_uri), read(timeline)


def test_a_worker_was_killed_and_the_trial_finished(survived):
    result, killer, *_ = survived
    assert killer.killed, "the fault was injected"
    assert not any(Path(f"/proc/{pid}").exists() for pid in killer.killed)
    (row,) = pq.read_table(result.trials_path).to_pylist()
    assert row["status"] == "FINISHED" and row["epochs_run"] == EPOCHS


@pytest.mark.resume
def test_the_restarted_worker_continued_after_the_last_checkpoint(survived):
    """The replacement worker loads the checkpoint Train had registered last when the worker died
    and trains the epoch after it first; epoch 1 is trained once, by the killed worker."""
    result, killer, _, timeline = survived
    (row,) = pq.read_table(result.trials_path).to_pylist()
    assert killer.checkpointed is not None, "the worker group was restarted"
    checkpoint_dir, checkpointed = killer.checkpointed[row["trial_id"]]
    processes = train_processes(timeline)
    assert len(processes) == 2, f"the killed worker and one replacement: {list(processes)}"
    (killed, killed_marks), (restarted, restarted_marks) = processes.items()
    assert killed in killer.killed and restarted not in killer.killed
    assert epochs_marked(killed_marks, "checkpoint.restored") == [], "the first worker began fresh"
    assert KILL_AFTER_EPOCH <= checkpointed <= max(epochs_marked(killed_marks, "epoch.saved")), (
        "the checkpoint is one the killed worker wrote, no older than the epoch seen in MLflow"
    )
    (restored,) = [entry for entry in restarted_marks if entry["phase"] == "checkpoint.restored"]
    assert (restored["epoch"], Path(restored["checkpoint"]).name) == (
        checkpointed,
        checkpoint_dir,
    ), "the replacement loaded Train's latest checkpoint"
    assert epochs_marked(restarted_marks, "epoch.start") == list(
        range(checkpointed + 1, EPOCHS + 1)
    ), f"the replacement trained from epoch {checkpointed + 1}, not from 1"
    assert [
        entry["pid"]
        for entry in timeline
        if entry["phase"] == "epoch.start" and entry["epoch"] == 1
    ] == [killed], "epoch 1 trained once"


def test_each_epoch_is_in_mlflow_exactly_once(survived):
    result, _, client, _ = survived
    (run,) = result.tracking.child_runs()
    assert run.info.status == "FINISHED"
    for metric in ("lr", "knn_top1", "loss"):
        steps = [point.step for point in client.get_metric_history(run.info.run_id, metric)]
        assert sorted(steps) == list(range(1, EPOCHS + 1)), f"{metric}: no duplicate step, no gap"
    assert "backbone.pt" in {artifact.path for artifact in client.list_artifacts(run.info.run_id)}


def test_the_parquet_rows_have_each_epoch_once(survived):
    result, *_ = survived
    epochs = pq.read_table(result.epochs_path)["epoch"].to_pylist()
    assert epochs == list(range(1, EPOCHS + 1))
