"""A sweep meets a truncated checkpoint: the newest checkpoint of a running trial is cut to a
third, then its Train workers are SIGKILLed. Train restarts them, the worker skips the unreadable
checkpoint for the previous one, and the trial still ends FINISHED with each epoch recorded once.
Real local Ray, a real MLflow store, a real SIGKILL."""

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray
from mlflow.tracking import MlflowClient

from study import StudyConfig, run_study
from tests.reliability.test_worker_killed import KillWorkerAfterEpoch
from trainables.train import CHECKPOINT_FILE, CheckpointError, load_checkpoint

pytestmark = pytest.mark.ray

EPOCHS = 4
TRUNCATE_AFTER_EPOCH = 2


class TruncateThenKill(KillWorkerAfterEpoch):
    def __init__(self, tracking_uri: str, epoch: int, train_storage: Path) -> None:
        super().__init__(tracking_uri, epoch)
        self.train_storage = train_storage
        self.truncated: list[Path] = []

    def before_kill(self) -> None:
        newest = max(
            self.train_storage.rglob(f"checkpoint_*/{CHECKPOINT_FILE}"),
            key=lambda path: path.parent.name,
        )
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 3])
        self.truncated.append(newest)


@pytest.fixture(scope="module")
def survived(tmp_path_factory):
    root = tmp_path_factory.mktemp("truncated-checkpoint")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    config = StudyConfig(
        space="overlap",
        grid=True,
        grid_only={"views.params.overlap": [0.5]},
        epochs=EPOCHS,
        grace_period=EPOCHS,
        overrides={"data.limit": 640, "data.eval_limit": 200},
        name="truncated",
        max_failures=2,
        checkpoints_to_keep=EPOCHS + 1,
        storage=str(root / "runs"),
        tracking_uri=uri,
    )
    fault = TruncateThenKill(uri, TRUNCATE_AFTER_EPOCH, root / "runs" / "truncated" / "train")
    assert not ray.is_initialized(), "the sweep starts its own local Ray, as on a laptop"
    fault.start()
    try:
        result = run_study(config)
    finally:
        fault.done.set()
        fault.join()
    assert not ray.is_initialized(), "run_study shuts down the Ray it started"
    return result, fault, MlflowClient(uri)


def test_the_newest_checkpoint_was_truncated_and_the_workers_killed(survived):
    _, fault, _ = survived
    (truncated,) = fault.truncated
    assert fault.killed
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(truncated.parent)


@pytest.mark.resume
def test_the_trial_restarted_from_the_previous_checkpoint_and_finished(survived):
    result, fault, _ = survived
    (row,) = pq.read_table(result.trials_path).to_pylist()
    assert row["status"] == "FINISHED" and row["epochs_run"] == EPOCHS
    readable = []
    for path in sorted(fault.train_storage.rglob(f"checkpoint_*/{CHECKPOINT_FILE}")):
        if path != fault.truncated[0]:
            readable.append(load_checkpoint(path.parent)["epoch"])
    assert readable == list(range(1, EPOCHS + 1)), (
        "epoch 2 trained again from the epoch-1 checkpoint, then 3 and 4"
    )


def test_each_epoch_is_recorded_once(survived):
    result, _, client = survived
    (run,) = result.tracking.child_runs()
    assert run.info.status == "FINISHED"
    for metric in ("lr", "knn_top1", "loss"):
        assert sorted(
            point.step for point in client.get_metric_history(run.info.run_id, metric)
        ) == list(range(1, EPOCHS + 1))
    assert pq.read_table(result.epochs_path)["epoch"].to_pylist() == list(range(1, EPOCHS + 1))
