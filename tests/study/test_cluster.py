"""A sweep across a multi-node Ray cluster simulated on this machine: a head node without CPUs
and three worker nodes of one CPU each (``ray.cluster_utils.Cluster``: separate raylets, object
stores and resources, one GCS), a storage folder all of them share, and an MLflow tracking
server on 127.0.0.1 that takes the artifacts itself (``--artifacts-destination``), as
docs/cluster.md sets one up.

While the sweep runs, the node training one of its trials is removed (its raylet and every
process on it killed): the trial resumes from its last checkpoint on another node and
finishes. A second sweep runs one trial whose two DDP workers span both nodes.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray
from mlflow.tracking import MlflowClient
from ray.cluster_utils import Cluster

from dashboards.gallery import draw_view_pairs
from study import StudyConfig, run_study
from study.ui import Server, start_command
from study.vocabulary import NODES_TAG, TRIAL_TAG
from tests.reliability.test_tracking_dropped import free_port, steps, trial_runs
from trainables.validation import ConfigError

pytestmark = pytest.mark.ray
ON_THE_CLUSTER = pytest.mark.extended  # the tests on the simulated multi-node cluster

EPOCHS = 5
OVERLAPS = [0.3, 0.5, 0.7]
REMOVE_AFTER_EPOCH = 2
WORKER_NODES = 3  # two trials at a time, and a spare for the one whose node is removed
NODE = {"num_cpus": 1, "object_store_memory": 200 * 1024**2}
DATA = {"data.limit": 512, "data.eval_limit": 200}
TIMEOUT_S = 600


def tracking_server(root: Path) -> Server:
    """``mlflow server`` as docs/cluster.md starts it: artifacts go through the server."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "mlflow-artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    return start_command(command, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}")


class RemoveNodeMidTrial(threading.Thread):
    """Once a trial has checkpointed epoch ``REMOVE_AFTER_EPOCH`` (and has epochs left), removes
    the node its worker runs on (no graceful drain). It reads the Train controller's checkpoint
    snapshots on the shared storage, which hold each checkpoint's reported metrics and nodes as
    soon as it is registered; the MLflow runs lag behind by Tune's relay and the driver, by as much
    as a whole short trial. (Nodes can only be added from the main thread, so the cluster starts
    with a spare.)"""

    def __init__(self, cluster: Cluster, train_root: Path) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.train_root = train_root
        self.removed: tuple[str, str, int] | None = (
            None  # (trial id, node id, last checkpointed epoch)
        )
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            deadline = time.monotonic() + TIMEOUT_S
            while not self.stop.is_set() and time.monotonic() < deadline and self.removed is None:
                for trial_id, metrics in self.checkpointed():
                    if REMOVE_AFTER_EPOCH <= metrics["epoch"] < EPOCHS:
                        self.remove(trial_id, metrics["nodes"].split(",")[-1], metrics["epoch"])
                        break
                time.sleep(0.05)
        except BaseException as error:  # surfaced by the test
            self.error = error

    def checkpointed(self) -> list[tuple[str, dict]]:
        """(trial id, metrics of its latest checkpoint) for each trial that has one."""
        found = []
        for snapshot in self.train_root.glob("trial-*/checkpoint_manager_snapshot.json"):
            try:
                latest = json.loads(snapshot.read_text())["latest_checkpoint_result"]
            except (OSError, ValueError, KeyError):  # being rewritten
                continue
            if latest:
                found.append((snapshot.parent.name.removeprefix("trial-"), latest["metrics"]))
        return found

    def remove(self, trial_id: str, node_id: str, epoch: int) -> None:
        node = next(node for node in self.cluster.worker_nodes if node.node_id == node_id)
        self.cluster.remove_node(node, allow_graceful=False)
        self.removed = (trial_id, node_id, epoch)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    assert not ray.is_initialized()
    root = tmp_path_factory.mktemp("cluster")
    server = tracking_server(root)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "object_store_memory": NODE["object_store_memory"],
            "include_dashboard": True,
            "dashboard_host": "127.0.0.1",
        },
    )
    try:
        for _ in range(WORKER_NODES):
            cluster.add_node(**NODE)
        cluster.wait_for_nodes()
        yield {"cluster": cluster, "root": root, "server": server}
    finally:
        ray.shutdown()
        cluster.shutdown()
        server.stop()


def sweep_config(root: Path, server: Server, cluster: Cluster, name: str, **fields) -> StudyConfig:
    return StudyConfig(
        **{
            "space": "overlap",
            "grid": True,
            "epochs": EPOCHS,
            "grace_period": EPOCHS,
            "max_concurrent_trials": 2,
            "max_failures": 2,
            "overrides": dict(DATA),
            "name": name,
            "storage": str(root / "shared-runs"),
            "tracking_uri": server.tracking_uri,
            "address": cluster.address,
            **fields,
        }
    )


@pytest.fixture(scope="module")
def moved(cluster):
    """A 3-trial grid whose running trial loses its node after epoch 2."""
    name = "across-nodes"
    remover = RemoveNodeMidTrial(
        cluster["cluster"], cluster["root"] / "shared-runs" / name / "train"
    )
    remover.start()
    try:
        result = run_study(
            sweep_config(
                cluster["root"],
                cluster["server"],
                cluster["cluster"],
                name,
                grid_only={"views.params.overlap": OVERLAPS},
            ),
            view_gallery=draw_view_pairs,
        )
    finally:
        remover.stop.set()
        remover.join()
    assert remover.error is None, remover.error
    assert not ray.is_initialized(), "the driver disconnected from the cluster"
    return {
        "result": result,
        "removed": remover.removed,
        "client": MlflowClient(cluster["server"].tracking_uri),
    }


@ON_THE_CLUSTER
def test_trials_ran_on_more_than_one_node(moved):
    trials = pq.read_table(moved["result"].trials_path).to_pylist()
    assert sorted(row["status"] for row in trials) == ["FINISHED"] * len(OVERLAPS)
    nodes = {node for row in trials for node in row["nodes"].split(",")}
    assert len(nodes) >= 2, nodes


@pytest.mark.resume
@ON_THE_CLUSTER
def test_a_trial_resumed_on_another_node_after_its_node_was_removed(moved):
    assert moved["removed"] is not None, "a node was removed while a trial ran on it"
    trial_id, removed_node, checkpointed = moved["removed"]
    trial = next(
        row
        for row in pq.read_table(moved["result"].trials_path).to_pylist()
        if row["trial_id"] == trial_id
    )
    assert trial["status"] == "FINISHED" and trial["epochs_run"] == EPOCHS
    ran_on = trial["nodes"].split(",")
    assert ran_on[0] == removed_node and len(ran_on) >= 2, ran_on
    epochs = [
        row
        for row in pq.read_table(moved["result"].epochs_path).to_pylist()
        if row["trial_id"] == trial_id
    ]
    assert [row["epoch"] for row in epochs] == list(range(1, EPOCHS + 1)), (
        "each epoch once, none lost"
    )
    on_removed = [row["nodes"] == removed_node for row in epochs]
    resumed_at = on_removed.index(False)
    assert resumed_at >= checkpointed and not any(on_removed[resumed_at:]), (
        f"epochs 1-{checkpointed} (checkpointed before the removal) trained on the removed node, "
        f"the rest elsewhere: {on_removed}"
    )
    (run,) = [run for run in trial_runs(moved["client"]) if run.data.tags[TRIAL_TAG] == trial_id]
    assert run.data.tags[NODES_TAG].split(",") == ran_on


@ON_THE_CLUSTER
def test_every_trials_metrics_and_artifacts_reached_the_server(moved):
    client = moved["client"]
    runs = trial_runs(client)
    assert len(runs) == len(OVERLAPS)
    for run in runs:
        assert run.info.status == "FINISHED"
        assert steps(client, run.info.run_id, "knn_top1") == list(range(1, EPOCHS + 1)), (
            "every epoch exactly once"
        )
        assert run.data.tags[NODES_TAG]
        assert run.info.artifact_uri.startswith("mlflow-artifacts:"), (
            "artifacts went through the server"
        )
        artifacts = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "view_pairs.png", "view_stats.json", "backbone.pt"} <= artifacts, (
            artifacts
        )
        downloaded = Path(client.download_artifacts(run.info.run_id, "config.yaml"))
        assert "overlap" in downloaded.read_text()


@ON_THE_CLUSTER
def test_one_trials_ddp_workers_span_two_nodes(cluster, moved):
    result = run_study(
        sweep_config(
            cluster["root"],
            cluster["server"],
            cluster["cluster"],
            "ddp-across-nodes",
            grid_only={"views.params.overlap": [0.5]},
            workers_per_trial=2,
            epochs=2,
            grace_period=2,
        )
    )
    (trial,) = pq.read_table(result.trials_path).to_pylist()
    assert trial["status"] == "FINISHED"
    assert len(set(trial["nodes"].split(","))) == 2, trial["nodes"]


@ON_THE_CLUSTER
def test_a_store_on_the_drivers_disk_is_refused_on_a_cluster(cluster, moved, tmp_path):
    config = sweep_config(tmp_path, cluster["server"], cluster["cluster"], "refused")
    local_store = StudyConfig.from_dict(
        {**config.to_dict(), "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    )
    with pytest.raises(
        ConfigError, match="tracking_uri=.*an MLflow tracking server every node reaches"
    ):
        run_study(local_store)
    assert not (tmp_path / "shared-runs" / "refused").exists()
    assert not ray.is_initialized()


@ON_THE_CLUSTER
def test_artifacts_kept_on_one_machines_disk_are_refused_on_a_cluster(cluster, moved, tmp_path):
    MlflowClient(cluster["server"].tracking_uri).create_experiment(
        "file-artifacts", artifact_location=(tmp_path / "a").as_uri()
    )
    config = sweep_config(tmp_path, cluster["server"], cluster["cluster"], "file-artifacts")
    with pytest.raises(ConfigError, match="tracking_uri=.*stores them in file:"):
        run_study(config)
    assert not (tmp_path / "shared-runs" / "file-artifacts").exists()
    assert not ray.is_initialized()


def test_the_address_flag_wins_over_ray_address(monkeypatch):
    from study.cluster import cluster_address

    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert cluster_address("auto") == "auto"
    assert cluster_address(None) == "10.0.0.1:6379"
    monkeypatch.delenv("RAY_ADDRESS")
    assert cluster_address(None) is None


SERVER_TRACEBACK = (
    "Initialization failure from server:\nTraceback (most recent call last):\n"
    '  File "proxier.py", line 766, in Datapath\n'
    "RuntimeError: Starting Ray client server failed. "
    "See ray_client_server_23000.err for detailed logs.\n"
)


class FlakyInit:
    """``ray.init`` whose Ray Client server fails to start this driver's server ``failures``
    times."""

    def __init__(self, failures: int, error: str = SERVER_TRACEBACK) -> None:
        self.failures, self.error, self.calls = failures, error, []

    def __call__(self, **kwargs) -> None:
        self.calls.append(kwargs)
        if len(self.calls) <= self.failures:
            raise ConnectionAbortedError(self.error)


@pytest.fixture
def answering(monkeypatch):
    """A client server port that accepts connections (so the address is not refused unheard)."""
    import socket

    import study.cluster

    listener = socket.create_server(("127.0.0.1", 0))
    monkeypatch.setattr(study.cluster, "CLIENT_INIT_PAUSE_S", 0.0)
    yield f"ray://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def test_a_client_server_that_could_not_start_the_drivers_server_is_tried_again(
    monkeypatch, answering
):
    from study.cluster import connect

    init = FlakyInit(failures=2)
    monkeypatch.setattr(ray, "init", init)
    assert connect(answering) is True
    assert [call["address"] for call in init.calls] == [answering] * 3


def test_a_client_server_that_never_starts_it_is_named_with_the_servers_reason(
    monkeypatch, answering
):
    from study.cluster import CLIENT_INIT_ATTEMPTS, connect

    init = FlakyInit(failures=CLIENT_INIT_ATTEMPTS)
    monkeypatch.setattr(ray, "init", init)
    with pytest.raises(
        ConfigError,
        match=r"Initialization failure from server: "
        r"RuntimeError: Starting Ray client server failed",
    ):
        connect(answering)
    assert len(init.calls) == CLIENT_INIT_ATTEMPTS


def test_other_client_failures_are_not_tried_again(monkeypatch, answering):
    from study.cluster import connect

    init = FlakyInit(failures=1, error="ray client connection timeout")
    monkeypatch.setattr(ray, "init", init)
    with pytest.raises(
        ConfigError, match=r"reaches its client server \(ray client connection timeout\)"
    ):
        connect(answering)
    assert len(init.calls) == 1
