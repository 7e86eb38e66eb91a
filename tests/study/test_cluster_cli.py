"""docs/cluster.md's shell walkthrough, on one machine: ``ray start --head``, ``ray
get-auth-token``, ``ray start --address`` for a worker node, ``mlflow server``, ``study run
--address``, ``ray status``, ``study ls``, ``study resume``, ``study export``, ``study report``, a
sweep submitted as a Ray Job (``ray job submit``) and one driven over Ray Client
(``--address ray://host:port``), then the refusals: a wrong token (at the GCS and at the Ray Client
server), an address where no cluster answers, and a node (started inside its own mount
namespace, with a private folder mounted over the storage path) that does not see the storage.
``ray stop`` ends it. Every process is a real CLI call."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray
from mlflow.tracking import MlflowClient

from tests.s3 import free_port
from tests.study.test_cluster import tracking_server

pytestmark = [pytest.mark.ray, pytest.mark.extended]

BIN = Path(sys.executable).parent
TIMEOUT_S = 420
SWEEP = [
    "--space",
    "overlap",
    "--grid",
    "--grid-only",
    "views.params.overlap=[0.3,0.7]",
    "--epochs",
    "2",
    "--grace-period",
    "2",
    "--set",
    "data.limit=192",
    "--set",
    "data.eval_limit=200",
]


def can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "true"], capture_output=True
    )
    return probe.returncode == 0


class Shell:
    """Runs commands as a user would, with the walkthrough's environment."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd

    def __call__(
        self, *command: str, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [str(BIN / command[0]) if (BIN / command[0]).exists() else command[0], *command[1:]],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            cwd=self.cwd,
            env={**self.env, **env},
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} exited {done.returncode}:\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory):
    assert not ray.is_initialized()
    root = tmp_path_factory.mktemp("walkthrough")
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    (root / "home").mkdir()
    env.update(
        HOME=str(root / "home"), RAY_AUTH_MODE="token", PYTHONUNBUFFERED="1"
    )  # the token: $HOME/.ray/auth_token
    shell = Shell(env, root)
    port, dashboard_port, client_port = free_port(), free_port(), free_port()
    address = f"127.0.0.1:{port}"
    server = tracking_server(root)
    try:
        shell("ray", "get-auth-token", "--generate")
        shell(
            "ray",
            "start",
            "--head",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=0",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard_port}",
            f"--ray-client-server-port={client_port}",
            f"--object-store-memory={200 * 1024**2}",
        )
        token = shell("ray", "get-auth-token").stdout.strip().splitlines()[-1]
        shell.env["RAY_AUTH_TOKEN"] = token
        shell(
            "ray",
            "start",
            f"--address={address}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=2",
            f"--object-store-memory={200 * 1024**2}",
        )
        yield {
            "shell": shell,
            "root": root,
            "address": address,
            "token": token,
            "server": server,
            "storage": root / "shared-runs",
            "dashboard": f"http://127.0.0.1:{dashboard_port}",
            "client": f"ray://127.0.0.1:{client_port}",
        }
    finally:
        shell("ray", "stop", "--force", check=False)
        server.stop()


@pytest.fixture(scope="module")
def ran(walkthrough):
    shell, storage = walkthrough["shell"], str(walkthrough["storage"])
    tracking = walkthrough["server"].tracking_uri
    run = shell(
        "study",
        "run",
        *SWEEP,
        "--address",
        walkthrough["address"],
        "--storage",
        storage,
        "--tracking-uri",
        tracking,
        "--name",
        "cli-sweep",
    )
    return {
        "run": run,
        "status": shell("ray", "status", f"--address={walkthrough['address']}"),
        "ls": shell("study", "ls", "--storage", storage),
        "resume": shell(
            "study", "resume", "cli-sweep", "--storage", storage, RAY_ADDRESS=walkthrough["address"]
        ),
        "export": shell("study", "export", "cli-sweep", "--storage", storage),
        "report": shell("study", "report", "cli-sweep", "--storage", storage),
    }


def test_the_documented_commands_run_a_sweep_on_the_cluster(walkthrough, ran):
    assert "sweep cli-sweep: grid over overlap, 2 trials x 2 epochs" in ran["run"].stdout
    trials = pq.read_table(
        walkthrough["storage"] / "cli-sweep" / "results" / "trials.parquet"
    ).to_pylist()
    assert [row["status"] for row in trials] == ["FINISHED", "FINISHED"]
    assert all(row["nodes"] for row in trials)
    assert "cli-sweep" in ran["ls"].stdout and "finished" in ran["ls"].stdout
    assert "sweep cli-sweep: 2 trials" in ran["resume"].stdout
    assert ran["export"].stdout.split() == [
        str(walkthrough["storage"] / "cli-sweep" / "results" / name)
        for name in ("trials.parquet", "epochs.parquet")
    ]
    assert "report.html" in ran["report"].stdout
    active = ran["status"].stdout.split("Active:")[1].split("Pending:")[0]
    assert active.count("node_") == 2, ran["status"].stdout
    runs = MlflowClient(walkthrough["server"].tracking_uri).search_runs(
        [
            MlflowClient(walkthrough["server"].tracking_uri)
            .get_experiment_by_name("cli-sweep")
            .experiment_id
        ],
        filter_string="tags.`study.role` = 'trial'",
    )
    assert sorted(run.info.status for run in runs) == ["FINISHED", "FINISHED"]


def test_a_wrong_token_is_refused_naming_the_address(walkthrough, ran):
    shell = walkthrough["shell"]
    refused = shell(
        "study",
        "run",
        *SWEEP,
        "--address",
        walkthrough["address"],
        "--storage",
        str(walkthrough["storage"]),
        "--tracking-uri",
        walkthrough["server"].tracking_uri,
        "--name",
        "wrong-token",
        check=False,
        RAY_AUTH_TOKEN="0" * 32,
    )
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert (
        f"address='{walkthrough['address']}' is invalid: "
        "expected a Ray cluster that accepts this driver's token" in refused.stderr
    )
    assert "RAY_AUTH_TOKEN" in refused.stderr
    assert not (walkthrough["storage"] / "wrong-token").exists()


def test_an_address_without_a_cluster_is_refused(walkthrough, ran):
    nowhere = f"127.0.0.1:{free_port()}"
    refused = walkthrough["shell"](
        "study",
        "run",
        *SWEEP,
        "--address",
        nowhere,
        "--storage",
        str(walkthrough["storage"]),
        "--tracking-uri",
        walkthrough["server"].tracking_uri,
        "--name",
        "nowhere",
        check=False,
    )
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert (
        f"address='{nowhere}' is invalid: expected the address of a running Ray cluster"
        in refused.stderr
    )


def one_trial_sweep(walkthrough, name: str) -> list[str]:
    return [
        "study",
        "run",
        "--space",
        "overlap",
        "--grid",
        "--grid-only",
        "views.params.overlap=[0.5]",
        "--epochs",
        "2",
        "--grace-period",
        "2",
        "--set",
        "data.limit=192",
        "--set",
        "data.eval_limit=200",
        "--storage",
        str(walkthrough["storage"]),
        "--tracking-uri",
        walkthrough["server"].tracking_uri,
        "--name",
        name,
    ]


def finished_trials(walkthrough, name: str) -> list[dict]:
    trials = pq.read_table(walkthrough["storage"] / name / "results" / "trials.parquet").to_pylist()
    client = MlflowClient(walkthrough["server"].tracking_uri)
    runs = client.search_runs(
        [client.get_experiment_by_name(name).experiment_id],
        filter_string="tags.`study.role` = 'trial'",
    )
    assert [run.info.status for run in runs] == ["FINISHED"] * len(trials)
    return [row for row in trials if row["status"] == "FINISHED" and row["nodes"]]


def test_a_sweep_submitted_as_a_ray_job(walkthrough, ran):
    """``ray job submit --address http://<head>:8265 -- study run ...``: the driver runs on the
    head."""
    submitted = walkthrough["shell"](
        "ray",
        "job",
        "submit",
        "--address",
        walkthrough["dashboard"],
        "--",
        str(BIN / "study"),
        *one_trial_sweep(walkthrough, "job-sweep")[1:],
    )
    assert "succeeded" in submitted.stdout + submitted.stderr
    assert "sweep job-sweep: 1 trials" in submitted.stdout
    assert len(finished_trials(walkthrough, "job-sweep")) == 1


def test_a_sweep_driven_over_ray_client(walkthrough, ran):
    """``--address ray://<head>:10001``: Tune's driver loop runs on the cluster, the sweep's files
    and results are where ``--storage`` says."""
    driven = walkthrough["shell"](
        *one_trial_sweep(walkthrough, "client-sweep"), "--address", walkthrough["client"]
    )
    assert "TunerInternal" in driven.stdout + driven.stderr, (
        "the Tuner ran as an actor on the cluster"
    )
    assert len(finished_trials(walkthrough, "client-sweep")) == 1


def test_a_wrong_token_is_refused_by_the_ray_client_server(walkthrough, ran):
    refused = walkthrough["shell"](
        *one_trial_sweep(walkthrough, "client-refused"),
        "--address",
        walkthrough["client"],
        check=False,
        RAY_AUTH_TOKEN="0" * 32,
    )
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert (
        f"address='{walkthrough['client']}' is invalid: "
        "expected a Ray cluster that accepts this driver's token "
        "(Received when checking init: Invalid or missing authentication token)"
    ) in refused.stderr
    assert not (walkthrough["storage"] / "client-refused").exists()


# last: it adds a node that does not see the storage, which refuses any later sweep
@pytest.mark.skipif(
    not can_unshare(), reason="needs root and unshare(1) to give one node a private mount namespace"
)
def test_a_node_that_does_not_see_the_storage_is_named_and_nothing_starts(walkthrough, ran):
    shell, storage = walkthrough["shell"], walkthrough["storage"]
    before = sorted(path.name for path in storage.iterdir())
    node_local = (
        f"mount -t tmpfs tmpfs {storage} && "
        f"exec {BIN / 'ray'} start --address={walkthrough['address']} "
        f"--node-ip-address=127.0.0.1 --num-cpus=1 --object-store-memory={200 * 1024**2}"
    )
    shell("unshare", "-m", "--propagation", "private", "sh", "-c", node_local)
    refused = shell(
        "study",
        "run",
        *SWEEP,
        "--storage",
        str(storage),
        "--tracking-uri",
        walkthrough["server"].tracking_uri,
        "--name",
        "node-local",
        check=False,
        RAY_ADDRESS=walkthrough["address"],
    )
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert (
        f"storage='{storage}' is invalid: "
        "expected a folder shared by every node of the 3-node cluster" in refused.stderr
    )
    assert "do not see it" in refused.stderr
    assert sorted(path.name for path in storage.iterdir()) == before, "nothing was written or lost"
