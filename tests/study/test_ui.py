"""``study ui``: a real ``mlflow server`` on a real sweep store, started the way the CLI does.

The server is checked through MLflow's REST API, which is what the UI's pages call, and its
shutdown through the process table: every process of its group must be gone, the
``huey_consumer`` processes that a plain SIGTERM to ``mlflow server`` leaves behind included.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from study.tracking import metrics_of, start_sweep
from study.ui import (
    MODEL_TRAINING,
    Server,
    ServerError,
    experiment_url,
    group_alive,
    launch,
    stop_group,
    wait_until_ready,
)
from study.vocabulary import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG
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


@contextmanager
def running_study_ui(tracking_uri: str, cwd: Path) -> Iterator[tuple[subprocess.Popen, Lines, str]]:
    """``python -m study_cli ui`` in a session of its own, as a user runs it; yields (process,
    output, URL). Whatever is left running is killed afterwards."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "study_cli",
            "ui",
            "--port",
            str(free_port()),
            "--tracking-uri",
            tracking_uri,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
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


@pytest.fixture
def study_ui(mlflow_sweep, tmp_path):
    """``study ui`` on the real search sweep's store: (process, output, URL)."""
    with running_study_ui(mlflow_sweep["tracking_uri"], tmp_path) as running:
        yield running


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


TCP_LISTEN = "0A"
"""A socket's state in /proc/net/tcp while it listens."""
LOOPBACK = "127.0.0.1"


def proc_net_address(hex_address: str) -> str:
    """An address as /proc/net/tcp{,6} writes it (32-bit words in host order, little-endian
    here) in the usual notation."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[index : index + 4][::-1] for index in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, words)


def listening_on(port: int) -> dict[int, str]:
    """socket inode -> local address of every TCP socket listening on ``port`` (IPv4 and IPv6)."""
    found = {}
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.is_file():
            continue
        for row in table.read_text().splitlines()[1:]:
            fields = row.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if fields[3] == TCP_LISTEN and int(port_hex, 16) == port:
                found[int(fields[9])] = proc_net_address(address)
    return found


def socket_inodes(pids) -> set[int]:
    """The inodes of the sockets the processes ``pids`` hold open."""
    inodes = set()
    for pid in pids:
        try:
            descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:  # exited while we looked
            continue
        for descriptor in descriptors:
            with contextlib.suppress(OSError):
                target = os.readlink(descriptor)
                if target.startswith("socket:["):
                    inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def assert_listens_on_loopback_only(url: str, pgid: int) -> None:
    """What ``study ui`` printed is where its server listens, and only there: the URL's port is
    held by the server's process group, every socket listening on it is bound to 127.0.0.1 (not
    0.0.0.0 or ::, which other machines could reach), and a connection to it is accepted."""
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname == LOOPBACK, url
    listening = listening_on(parts.port)
    assert listening, f"nothing listens on port {parts.port}"
    assert set(listening.values()) == {LOOPBACK}, f"bound to {sorted(set(listening.values()))}"
    assert set(listening) <= socket_inodes(group_members(pgid)), (
        "the listening socket is the server's"
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=30):
        pass


def test_study_ui_serves_the_sweep_and_stops_its_whole_process_group(mlflow_sweep, study_ui):
    process, output, url = study_ui
    servers = children_of(process.pid)
    assert len(servers) == 1, f"study ui should run one mlflow server, found {servers}"
    pgid = os.getpgid(servers[0])
    assert pgid == servers[0] and pgid != os.getpgid(process.pid), (
        "the server leads a process group of its own"
    )

    assert_listens_on_loopback_only(url, pgid)
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


# The UI in a browser: Debian's headless chromium renders the React app and dumps its DOM.
needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None and not os.environ.get("CI"),
    reason="needs Debian's chromium (make test installs it; required under CI)",
)
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking")
# Virtual time runs the app's timers at once, but its calls to the server take real time: a page
# that has not settled yet is loaded again with a longer budget.
VIRTUAL_TIME_BUDGETS_MS = (30_000, 120_000)
CHROMIUM_TIMEOUT_S = 240
GENAI_OVERVIEW = ("Token Usage", "Tokens per Trace", "Latency")
"""Charts of the GenAI overview page, none of them on the runs table."""


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    """A sweep's MLflow record made by the study's own tracking functions, without Ray: the
    parent run and three trial runs nested under it, each with its knn_top1 of epoch 1."""
    tracking_uri = f"sqlite:///{tmp_path_factory.mktemp('small-sweep') / 'mlflow.db'}"
    # a sweep names its experiment and parent run alike: apart here, so that the page's header,
    # which names the experiment, does not show the parent run's name too
    tracking = start_sweep(tracking_uri, "small-sweep", "overlap-small", {"epochs": 1})
    client = tracking.client()
    trials, now = {}, int(time.time() * 1000)
    for index in range(3):
        name = f"trainable_small_{index:05d}"
        run_id = tracking.trial_run(f"small_{index:05d}", name)
        client.log_batch(run_id, metrics=metrics_of({"knn_top1": 0.5 + index / 10}, 1, now))
        client.set_terminated(run_id, "FINISHED")
        trials[run_id] = name
    client.set_terminated(tracking.parent_run_id, "FINISHED")
    assert set(tracking.trial_run_ids().values()) == set(trials)
    return {
        "tracking_uri": tracking_uri,
        "experiment_id": tracking.experiment_id,
        "parent_run_id": tracking.parent_run_id,
        "parent_name": tracking.study_name,
        "trial_names": sorted(trials.values()),
    }


@pytest.fixture(scope="module")
def small_sweep_ui(small_sweep, tmp_path_factory):
    """``study ui`` on the small sweep's store, shared by the module's browser tests (``slow``:
    the server takes about half a minute to start on 2 cores, and each page as long)."""
    with running_study_ui(small_sweep["tracking_uri"], tmp_path_factory.mktemp("ui")) as running:
        yield running


def page_text(dom: str) -> str:
    """The words of a dumped DOM: its title and visible text, without scripts and styles."""
    dom = re.sub(r"(?s)<(script|style)\b[^>]*>.*?</\1>", " ", dom)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom))).strip()


def rendered(url: str, profile: Path, settled) -> str:
    """The text of ``url`` as a fresh headless chromium (a new, empty profile) renders it, once
    ``settled(text)`` holds or the longest budget has run out."""
    for budget in VIRTUAL_TIME_BUDGETS_MS:
        shutil.rmtree(profile, ignore_errors=True)
        dump = subprocess.run(
            [
                "chromium",
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={budget}",
                "--dump-dom",
                url,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=CHROMIUM_TIMEOUT_S,
        )
        text = page_text(dump.stdout)
        if settled(text):
            break
    return text


@pytest.mark.slow
def test_study_ui_prints_each_sweeps_runs_page(small_sweep, small_sweep_ui):
    process, output, url = small_sweep_ui
    page = experiment_url(url, small_sweep["experiment_id"])
    output.wait_for(re.compile(re.escape(page)), process, EXIT_TIMEOUT_S)
    assert f"  small-sweep: {page}" in output.lines, "the experiment's name, then its runs page"
    assert page.endswith(f"?{MODEL_TRAINING}")


@pytest.mark.slow
@needs_chromium
def test_the_sweeps_experiment_opens_on_its_runs_table_in_chromium(
    small_sweep, small_sweep_ui, tmp_path
):
    """The experiment's page, in model-training mode, lands on the runs table: the sweep's
    parent run with its trials nested under it (collapsed: the table counts them), and every
    trial's name once the table is sorted by the score, which lists runs flat."""
    url, experiment_id = small_sweep_ui[2], small_sweep["experiment_id"]
    parent, trials = small_sweep["parent_name"], small_sweep["trial_names"]
    runs = len(trials) + 1
    landing = rendered(
        experiment_url(url, experiment_id),
        tmp_path / "profile",
        lambda text: f"{runs} matching runs" in text,
    )
    assert landing.startswith(f"Runs - Experiment {experiment_id} - MLflow"), landing[:2000]
    assert parent in landing and f"{runs} matching runs" in landing, landing[:2000]
    assert not [chart for chart in GENAI_OVERVIEW if chart in landing], landing[:2000]

    by_score = rendered(
        f"{url}/#/experiments/{experiment_id}/runs?{MODEL_TRAINING}"
        f"&orderByKey={urllib.parse.quote('metrics.`knn_top1`')}&orderByAsc=false",
        tmp_path / "profile",
        lambda text: all(name in text for name in trials),
    )
    assert all(name in by_score for name in [parent, *trials]), by_score[:2000]
    assert by_score.index(trials[-1]) < by_score.index(trials[0]), "best knn_top1 first"


@pytest.mark.slow
@needs_chromium
def test_mlflow_3_17_lands_on_genai_without_the_switch_whatever_the_experiments_kind(
    small_sweep, small_sweep_ui, tmp_path
):
    """Why the runs table needs ``workflowType`` in the URL: MLflow 3.17's UI takes an
    experiment's kind from its GenAI / Model training switch (GenAI in a fresh browser), not from
    the ``mlflow.experimentKind`` tag the sweep's experiment carries. A newer MLflow that honours
    the tag fails this test: the switch in the URL may then be dropped."""
    url, experiment_id = small_sweep_ui[2], small_sweep["experiment_id"]
    experiment = get_json(url, "/api/2.0/mlflow/experiments/get", experiment_id=experiment_id)
    tags = {tag["key"]: tag["value"] for tag in experiment["experiment"].get("tags", [])}
    assert tags.get(EXPERIMENT_KIND_TAG) == EXPERIMENT_KIND
    landing = rendered(
        f"{url}/#/experiments/{experiment_id}",
        tmp_path / "profile",
        lambda text: text.startswith(("Overview", "Runs")) and "Latency" in text,
    )
    assert landing.startswith(f"Overview - Experiment {experiment_id} - MLflow"), landing[:2000]
    assert all(chart in landing for chart in GENAI_OVERVIEW), landing[:2000]
    assert small_sweep["parent_name"] not in landing
