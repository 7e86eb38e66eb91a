"""The MLflow tracking server dies mid-sweep (SIGKILL of ``study ui``'s ``mlflow server``) and
stays down until the sweep ends: real local Ray, a real MLflow server on 127.0.0.1.

Training goes on and the sweep ends normally with complete Parquet results; the tracking writes
it could not make are kept in the sweep's outbox, and ``study sync`` replays them once the
server is back, so MLflow ends with every epoch of every trial exactly once.

The sweep also runs with a tracking token in the environment (the server ignores it): it must
not reach any param, tag, artifact, log or file the sweep writes."""

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from study import StudyConfig, run_study
from study.outbox import read_outbox
from study.state import read_state
from study.ui import signal_group, start, wait_group
from study.vocabulary import OUTBOX_FILE, STATE_TAG
from tests.real_sweeps import QUICK

pytestmark = pytest.mark.ray

EPOCHS = 3
OVERLAPS = [0.3, 0.5, 0.7]
NAME = "tracking-dropped"
SECRET = "s3cr3t-token-5f1c9e"
TIMEOUT_S = 300
# Epochs long enough (4x QUICK's images) that no trial can finish its last one between the
# killer seeing a first epoch in the store and the server's death.
SLOW_EPOCHS = {**QUICK, "data.limit": 4 * QUICK["data.limit"]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def trial_runs(client: MlflowClient) -> list:
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    return (
        client.search_runs(experiments, filter_string="tags.`study.role` = 'trial'")
        if experiments
        else []
    )


def steps(client: MlflowClient, run_id: str, metric: str = "lr") -> list[int]:
    return sorted(point.step for point in client.get_metric_history(run_id, metric))


class KillServerAfterFirstEpoch(threading.Thread):
    """Reads the server's sqlite store directly; SIGKILLs the server's process group once a
    trial's first epoch is in it."""

    def __init__(self, server, store_uri: str) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.client = MlflowClient(store_uri)
        self.killed_at: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not self.stop.is_set() and time.monotonic() < deadline:
            if any(steps(self.client, run.info.run_id) for run in trial_runs(self.client)):
                signal_group(self.server.process.pid, signal.SIGKILL)
                wait_group(self.server.process, 30)
                self.killed_at = time.monotonic()
                return
            time.sleep(0.5)


@pytest.fixture(scope="module")
def dropped(tmp_path_factory):
    root = tmp_path_factory.mktemp("tracking-dropped")
    (root / "mlflow.db").touch()
    store_uri = f"sqlite:///{root / 'mlflow.db'}"
    port = free_port()
    server = start(store_uri, port)
    log_file = root / "driver.log"
    handler = logging.FileHandler(log_file)
    logging.getLogger().addHandler(handler)
    os.environ["MLFLOW_TRACKING_TOKEN"] = SECRET
    killer = KillServerAfterFirstEpoch(server, store_uri)
    try:
        killer.start()
        config = StudyConfig(
            space="overlap",
            grid=True,
            grid_only={"views.params.overlap": OVERLAPS},
            epochs=EPOCHS,
            grace_period=EPOCHS,
            max_concurrent_trials=2,
            overrides=dict(SLOW_EPOCHS),
            name=NAME,
            storage=str(root / "runs"),
            tracking_uri=f"http://127.0.0.1:{port}",
        )
        result = run_study(config)
        killer.stop.set()
        killer.join()
        seen_while_down = {
            run.info.run_id: (run.info.status, steps(MlflowClient(store_uri), run.info.run_id))
            for run in trial_runs(MlflowClient(store_uri))
        }
        kept = read_outbox(result.directory / OUTBOX_FILE)
        state_before_sync = read_state(result.directory)
        with_runs_before_sync = pq.read_table(result.trials_path)["mlflow_run_id"].to_pylist()
        server = start(store_uri, port)
        sync = subprocess.run(
            [sys.executable, "-m", "study_cli", "sync", NAME, "--storage", str(root / "runs")],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    finally:
        killer.stop.set()
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
        logging.getLogger().removeHandler(handler)
        handler.close()
        server.stop()
    return {
        "root": root,
        "result": result,
        "client": MlflowClient(store_uri),
        "killer": killer,
        "kept": kept,
        "seen_while_down": seen_while_down,
        "state_before_sync": state_before_sync,
        "sync": sync,
        "run_ids_before_sync": with_runs_before_sync,
        "log_file": log_file,
    }


def test_the_server_died_mid_sweep_and_the_sweep_ended_normally(dropped):
    assert dropped["killer"].killed_at is not None, "the server was killed during the sweep"
    result = dropped["result"]
    assert dropped["state_before_sync"].lifecycle == "finished"
    rows = pq.read_table(result.trials_path).to_pylist()
    assert sorted(row["status"] for row in rows) == ["FINISHED"] * len(OVERLAPS)
    epochs = pq.read_table(result.epochs_path).to_pylist()
    for row in rows:
        assert sorted(
            epoch["epoch"] for epoch in epochs if epoch["trial_id"] == row["trial_id"]
        ) == list(range(1, EPOCHS + 1))


def test_the_writes_mlflow_missed_were_kept_in_order(dropped):
    kept = dropped["kept"]
    assert dropped["state_before_sync"].pending_tracking_writes == len(kept) > 0
    assert {"metrics", "close", "artifacts"} <= {operation["op"] for operation in kept}
    assert kept[-1] == {
        "op": "close",
        "status": "FINISHED",
        "keep_finished": False,
        "tags": {STATE_TAG: "finished"},
    }, "the parent's end is the last write"
    logged_before = max(
        (max(logged, default=0) for _, logged in dropped["seen_while_down"].values()), default=0
    )
    assert logged_before < EPOCHS, "the server died before the trials ended"
    for status, _ in dropped["seen_while_down"].values():
        assert status == "RUNNING", "no trial could be closed while the server was down"


def test_study_sync_gave_mlflow_every_epoch_once_and_every_status(dropped):
    sync, client, result = dropped["sync"], dropped["client"], dropped["result"]
    assert sync.returncode == 0, sync.stderr
    assert "MLflow has every tracking write" in sync.stdout
    assert not (result.directory / OUTBOX_FILE).exists()
    assert read_state(result.directory).pending_tracking_writes == 0
    runs = trial_runs(client)
    assert sorted(float(run.data.params["views.params.overlap"]) for run in runs) == OVERLAPS
    for run in runs:
        assert run.info.status == "FINISHED"
        for metric in ("lr", "knn_top1", "loss"):
            assert steps(client, run.info.run_id, metric) == list(range(1, EPOCHS + 1))
        assert "backbone.pt" in {
            artifact.path for artifact in client.list_artifacts(run.info.run_id)
        }
    parent = client.get_run(result.tracking.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_finished"] == len(
        OVERLAPS
    )
    assert {artifact.path for artifact in client.list_artifacts(parent.info.run_id, "results")} >= {
        "results/trials.parquet",
        "results/epochs.parquet",
        "results/summary.txt",
    }


def test_the_results_table_gets_every_run_id_after_the_sync(dropped):
    run_ids = pq.read_table(dropped["result"].trials_path)["mlflow_run_id"].to_pylist()
    assert all(run_ids)
    assert sorted(run_ids) == sorted(run.info.run_id for run in trial_runs(dropped["client"]))
    assert [old for old in dropped["run_ids_before_sync"] if old] == [
        new for new, old in zip(run_ids, dropped["run_ids_before_sync"]) if old
    ]


def test_the_tracking_token_reached_no_record(dropped, tmp_path):
    client, result, root = dropped["client"], dropped["result"], dropped["root"]
    runs = [*trial_runs(client), client.get_run(result.tracking.parent_run_id)]
    for run in runs:
        recorded = {**run.data.params, **run.data.tags}
        assert not any(SECRET in f"{key}={value}" for key, value in recorded.items())
        downloaded = Path(
            client.download_artifacts(run.info.run_id, "", str(tmp_path / run.info.run_id))
        )
        for path in downloaded.rglob("*"):
            assert not (path.is_file() and SECRET.encode() in path.read_bytes()), path
    written = [path for path in root.rglob("*") if path.is_file()]
    assert dropped["log_file"] in written and any(path.name == "mlflow.db" for path in written)
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), f"the token is in {path}"
    ray_logs = Path("/tmp/ray/session_latest/logs")
    for path in ray_logs.rglob("*") if ray_logs.is_dir() else []:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), f"the token is in {path}"
