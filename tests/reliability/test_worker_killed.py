"""A Ray Train worker SIGKILLed mid-trial: Train's FailureConfig restarts the worker group from the
last checkpoint and the trial finishes. Real local Ray, real MLflow store, a real SIGKILL."""

import os
import signal
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from study import StudyConfig, run_study

EPOCHS = 4
KILL_AFTER_EPOCH = 2


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


class KillWorkerAfterEpoch(threading.Thread):
    """Watches the trial's MLflow run; once ``epoch`` is logged, SIGKILLs the Train worker."""

    def __init__(self, tracking_uri: str, epoch: int) -> None:
        super().__init__(daemon=True)
        self.client = MlflowClient(tracking_uri)
        self.epoch = epoch
        self.killed: list[int] = []
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


@pytest.fixture(scope="module")
def survived(tmp_path_factory):
    root = tmp_path_factory.mktemp("worker-killed")
    uri = f"sqlite:///{root / 'mlflow.db'}"
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
    killer = KillWorkerAfterEpoch(uri, KILL_AFTER_EPOCH)
    killer.start()
    try:
        result = run_study(config)
    finally:
        killer.done.set()
        killer.join()
    return result, killer.killed, MlflowClient(result.tracking.tracking_uri)


def test_a_worker_was_killed_and_the_trial_finished(survived):
    result, killed, _ = survived
    assert killed, "the fault was injected"
    assert not any(Path(f"/proc/{pid}").exists() for pid in killed)
    (row,) = pq.read_table(result.trials_path).to_pylist()
    assert row["status"] == "FINISHED" and row["epochs_run"] == EPOCHS


def test_each_epoch_is_in_mlflow_exactly_once(survived):
    result, _, client = survived
    (run,) = result.tracking.child_runs()
    assert run.info.status == "FINISHED"
    for metric in ("lr", "knn_top1", "loss"):
        steps = [point.step for point in client.get_metric_history(run.info.run_id, metric)]
        assert sorted(steps) == list(range(1, EPOCHS + 1)), f"{metric}: no duplicate step, no gap"
    assert "backbone.pt" in {artifact.path for artifact in client.list_artifacts(run.info.run_id)}


def test_the_parquet_rows_have_each_epoch_once(survived):
    result, _, _ = survived
    epochs = pq.read_table(result.epochs_path)["epoch"].to_pylist()
    assert epochs == list(range(1, EPOCHS + 1))
