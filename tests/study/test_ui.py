"""``study ui``: a real ``mlflow server`` on a real sweep store, started the way the CLI does.

The server is checked through MLflow's REST API, which is what the UI's pages call, and its
shutdown through the process table: every process of its group must be gone, the
``huey_consumer`` processes that a plain SIGTERM to ``mlflow server`` leaves behind included.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from study.ui import Server, ServerError, group_alive, launch, stop_group, wait_until_ready
from study_cli.commands import main

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").is_file(), reason="reads the process table from /proc"
)

URL_PATTERN = re.compile(r"http://127\.0\.0\.1:\d+")
# The CLI imports torch and Ray, then the server imports MLflow in several processes.
STARTUP_TIMEOUT_S = 300
EXIT_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def mlflow_sweep(search_sweep):
    """The real search sweep's store: ``tracking_uri``, ``experiment_id``, ``parent_run_id`` and
    ``children``: child run_id -> knn_top1 values of epochs 1, 2, ... (the step is the epoch)."""
    tracking = search_sweep.tracking
    client = MlflowClient(tracking.tracking_uri)
    children = {}
    for run in tracking.child_runs():
        history = sorted(
            client.get_metric_history(run.info.run_id, "knn_top1"), key=lambda metric: metric.step
        )
        assert [metric.step for metric in history] == list(range(1, len(history) + 1))
        children[run.info.run_id] = [metric.value for metric in history]
    assert len(children) == search_sweep.trials.num_rows
    return {
        "tracking_uri": tracking.tracking_uri,
        "experiment_id": tracking.experiment_id,
        "parent_run_id": tracking.parent_run_id,
        "children": children,
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, process group, command name) of every process, from /proc."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # exited while we looked
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        table[int(stat.parent.name)] = (int(fields[1]), int(fields[2]), name)
    return table


def children_of(pid: int) -> list[int]:
    return [child for child, (parent, _, _) in process_table().items() if parent == pid]


def group_members(pgid: int) -> dict[int, str]:
    return {pid: name for pid, (_, group, name) in process_table().items() if group == pgid}


def cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Lines:
    """The output of a process, read on a thread so that waiting for a line can time out."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: re.Pattern, process: subprocess.Popen, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := pattern.search(line):
                    return match.group(0)
            if process.poll() is not None and not self._thread.is_alive():
                break
            time.sleep(0.2)
        raise AssertionError(
            f"no line matching {pattern.pattern} (exit code {process.poll()}):\n"
            + "\n".join(self.lines)
        )

    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def study_ui(mlflow_sweep, tmp_path):
    """``python -m study_cli ui`` in a session of its own, as a user runs it; yields (process,
    output, URL). Whatever the test leaves running is killed afterwards."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "study_cli",
            "ui",
            "--port",
            str(free_port()),
            "--tracking-uri",
            mlflow_sweep["tracking_uri"],
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    output = Lines(process.stdout)
    servers: set[int] = set()  # a server leads its own group: see study.ui.launch
    try:
        url = output.wait_for(URL_PATTERN, process, STARTUP_TIMEOUT_S)
        servers.update(children_of(process.pid))
        yield process, output, url
    finally:
        for pgid in servers | set(children_of(process.pid)):
            kill_group(pgid)
        kill_group(process.pid)
        process.wait(EXIT_TIMEOUT_S)


def get_json(url: str, endpoint: str, **query) -> dict:
    with urllib.request.urlopen(
        f"{url}{endpoint}?{urllib.parse.urlencode(query)}", timeout=30
    ) as response:
        return json.load(response)


def post_json(url: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{url}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def search_runs(url: str, experiment_id: str) -> dict[str, dict]:
    """run_id -> run, through every page of ``runs/search``."""
    runs, token = {}, None
    while True:
        body = {
            "experiment_ids": [experiment_id],
            "max_results": 1000,
            **({"page_token": token} if token else {}),
        }
        page = post_json(url, "/api/2.0/mlflow/runs/search", body)
        runs.update({run["info"]["run_id"]: run for run in page.get("runs", [])})
        token = page.get("next_page_token")
        if not token:
            return runs


def tags_of(run: dict) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in run["data"].get("tags", [])}


def test_study_ui_serves_the_sweep_and_stops_its_whole_process_group(mlflow_sweep, study_ui):
    process, output, url = study_ui
    servers = children_of(process.pid)
    assert len(servers) == 1, f"study ui should run one mlflow server, found {servers}"
    pgid = os.getpgid(servers[0])
    assert pgid == servers[0] and pgid != os.getpgid(process.pid), (
        "the server leads a process group of its own"
    )

    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200 and b"<html" in response.read().lower()
    runs = search_runs(url, mlflow_sweep["experiment_id"])
    parent = mlflow_sweep["parent_run_id"]
    assert parent in runs and MLFLOW_PARENT_RUN_ID not in tags_of(runs[parent])
    results = get_json(url, "/api/2.0/mlflow/artifacts/list", run_id=parent, path="results")
    assert {"results/trials.parquet", "results/epochs.parquet"} <= {
        entry["path"] for entry in results.get("files", [])
    }
    for run_id, values in mlflow_sweep["children"].items():
        assert run_id in runs
        assert tags_of(runs[run_id])[MLFLOW_PARENT_RUN_ID] == parent
        history = get_json(
            url, "/api/2.0/mlflow/metrics/get-history", run_id=run_id, metric_key="knn_top1"
        )["metrics"]
        logged = sorted((int(metric.get("step", 0)), metric["value"]) for metric in history)
        assert logged == list(enumerate(values, start=1))
        listing = get_json(url, "/api/2.0/mlflow/artifacts/list", run_id=run_id)
        assert "config.yaml" in {entry["path"] for entry in listing.get("files", [])}
        with urllib.request.urlopen(
            f"{url}/get-artifact?"
            f"{urllib.parse.urlencode({'run_id': run_id, 'path': 'config.yaml'})}",
            timeout=30,
        ) as response:
            assert b"overlap" in response.read()

    members = {pid: f"{name}: {cmdline(pid)}" for pid, name in group_members(pgid).items()}
    assert servers[0] in members
    process.send_signal(signal.SIGINT)
    assert process.wait(EXIT_TIMEOUT_S) == 0, output.text()
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)
    survivors = {pid: name for pid, name in members.items() if Path(f"/proc/{pid}").exists()}
    assert not survivors, f"left running after study ui stopped: {survivors}"
    assert "mlflow server stopped" in output.text()


def test_sigterm_stops_the_server_too(study_ui):
    process, output, _ = study_ui
    pgid = os.getpgid(children_of(process.pid)[0])
    process.terminate()
    assert process.wait(EXIT_TIMEOUT_S) == 0, output.text()
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


@pytest.mark.parametrize("port", [0, 70000, -1])
def test_a_port_out_of_range_exits_2(port, mlflow_sweep, capsys):
    before = children_of(os.getpid())
    assert main(["ui", "--port", str(port), "--tracking-uri", mlflow_sweep["tracking_uri"]]) == 2
    assert f"--port={port} is invalid: expected an integer in [1, 65535]" in capsys.readouterr().err
    assert children_of(os.getpid()) == before


def test_a_port_in_use_exits_2(mlflow_sweep, capsys):
    before = children_of(os.getpid())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert (
            main(["ui", "--port", str(port), "--tracking-uri", mlflow_sweep["tracking_uri"]]) == 2
        )
    error = capsys.readouterr().err
    assert f"--port={port} is invalid" in error and "a free port" in error
    assert children_of(os.getpid()) == before


def test_a_missing_sqlite_store_exits_2(tmp_path, capsys):
    before = children_of(os.getpid())
    assert (
        main(
            [
                "ui",
                "--port",
                str(free_port()),
                "--tracking-uri",
                f"sqlite:///{tmp_path / 'missing.db'}",
            ]
        )
        == 2
    )
    error = capsys.readouterr().err
    assert "--tracking-uri=" in error and "missing.db" in error
    assert "run a sweep first (study demo) or pass --tracking-uri" in error
    assert not (tmp_path / "missing.db").exists()
    assert children_of(os.getpid()) == before


def test_a_server_that_exits_early_is_reported_with_its_output():
    process, output = launch(
        [
            sys.executable,
            "-c",
            "import sys; print('[Errno 98] address already in use'); sys.exit(3)",
        ]
    )
    server = Server("http://127.0.0.1:9", "sqlite:///unused.db", process, output)
    with pytest.raises(
        ServerError, match=r"(?s)exited with code 3 before answering.*address already in use"
    ):
        wait_until_ready(server, timeout=60)


def test_stop_group_kills_a_group_that_ignores_sigterm():
    """Escalation to SIGKILL, on a leader and a child that both ignore SIGTERM (the child
    inherits the ignored disposition)."""
    child = "import time; time.sleep(600)"
    leader = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"subprocess.Popen([sys.executable, '-c', {child!r}]); "
        "print('ready', flush=True); time.sleep(600)"
    )
    process, output = launch([sys.executable, "-c", leader])
    deadline = time.monotonic() + 60
    while "ready" not in output.text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(group_members(process.pid)) == 2
    started = time.monotonic()
    stop_group(process, timeout=1)
    assert time.monotonic() - started < 15
    assert not group_alive(process.pid)
