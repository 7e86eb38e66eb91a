"""``study ui``: the MLflow UI on the project's tracking store, started and stopped cleanly.

``mlflow server`` is a tree of processes: the CLI, uvicorn and its workers, and a job runner
with its ``huey_consumer`` processes. The CLI forwards SIGTERM to uvicorn only, so signalling the
PID we started leaves the huey consumers running as orphans. The server therefore gets a
session (and process group) of its own, and is stopped by signalling the whole group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from study.layout import local_artifact_root, resolve_tracking_uri
from trainables.validation import ConfigError, check_range

HOST = "127.0.0.1"
DEFAULT_PORT = 5000
MODEL_TRAINING = "workflowType=machine_learning"
"""The UI's GenAI / Model training switch, in a page's URL. MLflow 3.17's UI takes an
experiment's landing page from it (a fresh browser is in GenAI mode, which opens on an overview
of traces), not from the experiment's ``mlflow.experimentKind`` tag: the links the study prints
carry it."""
LINKED_SWEEPS = 10
SQLITE_PREFIX = "sqlite:///"
# The server imports all of MLflow in several processes: on a busy two-core machine that alone
# takes about a minute.
STARTUP_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 15.0
# After SIGKILL: the processes die at once, but orphans are only gone once init reaps them.
KILL_GRACE_S = 10.0
POLL_INTERVAL_S = 0.25
OUTPUT_LINES = 40
# One worker: a local UI has one user, and each extra worker costs another full import.
WORKERS = 1


class ServerError(RuntimeError):
    """The server exited, or did not answer HTTP, before it was ready."""


class OutputTail:
    """The last lines of the server's output, kept to explain a failure.

    A daemon thread drains the pipe, so the server never blocks on a full pipe buffer however
    long it runs, and memory stays bounded.
    """

    def __init__(self, stream: IO[str], lines: int = OUTPUT_LINES) -> None:
        self._lines: deque[str] = deque(maxlen=lines)
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.append(line.rstrip("\n"))

    def text(self, wait: float = 0.0) -> str:
        """The lines so far; ``wait`` up to that long for the end of the output, since a process
        that has just exited may still have lines in the pipe."""
        self._thread.join(wait)
        return "\n".join(list(self._lines))


@dataclass
class Server:
    """A running ``mlflow server``; ``process`` leads the process group that :meth:`stop` ends."""

    url: str
    tracking_uri: str
    process: subprocess.Popen
    output: OutputTail

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        stop_group(self.process, timeout)


def check_port(port: int, host: str = HOST) -> int:
    """Refuse a port out of range or taken, before anything starts: otherwise the server would
    only fail after its minute-long start, or the health check would reach another server."""
    check_range("--port", port, 1, 65535, integer=True)
    if not port_is_free(port, host):
        raise ConfigError("--port", port, f"a free port ({host}:{port} is in use)")
    return port


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether ``host:port`` can be listened on. SO_REUSEADDR, as uvicorn sets it, so that a port
    left in TIME_WAIT by a previous server counts as free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def store_uri(tracking_uri: str) -> str:
    """The absolute backend-store URI; a sqlite file must exist, since MLflow would silently
    create an empty store and the UI would show no sweeps."""
    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):
        raise ConfigError(
            "--tracking-uri",
            tracking_uri,
            "a database URI such as sqlite:///mlflow.db (an http URI is already a server: open it)",
        )
    if uri.startswith(SQLITE_PREFIX) and not Path(uri[len(SQLITE_PREFIX) :]).is_file():
        raise ConfigError(
            "--tracking-uri",
            uri,
            "an existing sqlite database: run a sweep first (study demo) or pass --tracking-uri",
        )
    return uri


def server_command(uri: str, port: int, host: str = HOST) -> list[str]:
    """``mlflow server`` of this interpreter's MLflow, bound to ``host``.

    Sweeps log artifacts to ``mlartifacts`` beside a sqlite database and record that folder as
    each experiment's (file:) artifact location, which the server reads directly. New
    experiments created through the server get the same root, and proxied (mlflow-artifacts:)
    uploads land there too, instead of in an ``mlartifacts`` folder of the working directory.
    """
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(WORKERS),
    ]
    artifact_root = local_artifact_root(uri)
    if artifact_root is not None:
        command += [
            "--default-artifact-root",
            artifact_root,
            "--artifacts-destination",
            artifact_root,
        ]
    return command


def launch(command: list[str]) -> tuple[subprocess.Popen, OutputTail]:
    """Start ``command`` as the leader of a new session, hence of its own process group."""
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return process, OutputTail(process.stdout)


def answers_http(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_until_ready(server: Server, timeout: float = STARTUP_TIMEOUT_S) -> None:
    """Return once the server answers HTTP; a server that exits first is reported with the tail
    of its output, which is where MLflow says why."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = server.process.poll()
        if code is not None:
            raise ServerError(
                f"mlflow server exited with code {code} before "
                f"answering:\n{server.output.text(wait=5)}"
            )
        if answers_http(server.url) and server.process.poll() is None:
            return
        time.sleep(POLL_INTERVAL_S)
    raise ServerError(
        f"mlflow server did not answer {server.url} within {timeout:.0f} s:\n{server.output.text()}"
    )


def group_alive(pgid: int) -> bool:
    """Whether any process (zombies included) is still in the group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def wait_group(process: subprocess.Popen, timeout: float) -> bool:
    """Reap the leader, then wait for the rest of the group (which outlives a leader that
    exits first); True if the group emptied within ``timeout``."""
    deadline = time.monotonic() + timeout
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        return False
    while group_alive(process.pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL_S)
    return True


def stop_group(process: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM every process of the group ``process`` leads, SIGKILL what is left after
    ``timeout``. A second Ctrl-C while waiting kills at once rather than leaving orphans."""
    pgid = process.pid  # the leader of its own session: see launch()
    try:
        signal_group(pgid, signal.SIGTERM)
        if not wait_group(process, timeout):
            signal_group(pgid, signal.SIGKILL)
            wait_group(process, KILL_GRACE_S)
    except KeyboardInterrupt:
        signal_group(pgid, signal.SIGKILL)
        wait_group(process, KILL_GRACE_S)
        raise


def start(tracking_uri: str, port: int) -> Server:
    """Validate the input, start the server and wait until it answers; stopped again if it
    does not (or on Ctrl-C while waiting)."""
    check_port(port)
    uri = store_uri(tracking_uri)
    return start_command(server_command(uri, port), f"http://{HOST}:{port}", uri)


def start_command(command: list[str], url: str, tracking_uri: str) -> Server:
    """Run a server ``command`` and wait until ``url`` answers; stopped again if it does not."""
    process, output = launch(command)
    server = Server(url, tracking_uri, process, output)
    try:
        wait_until_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


@contextmanager
def serve(tracking_uri: str, port: int) -> Iterator[Server]:
    """A running server for the ``with`` block; its whole process group is gone afterwards."""
    server = start(tracking_uri, port)
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Make SIGTERM unwind like Ctrl-C, so that ``kill`` stops the server cleanly too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def experiment_url(ui_url: str, experiment_id: str) -> str:
    """The page of an experiment's training runs (its parent run, the trials nested under it)."""
    return f"{ui_url}/#/experiments/{experiment_id}?{MODEL_TRAINING}"


def sweep_links(server: Server, limit: int = LINKED_SWEEPS) -> list[str]:
    """``NAME: URL`` of the store's most recently updated sweeps."""
    from mlflow.tracking import MlflowClient

    experiments = MlflowClient(server.tracking_uri).search_experiments(
        max_results=limit + 1, order_by=["last_update_time DESC"]
    )
    return [
        f"  {experiment.name}: {experiment_url(server.url, experiment.experiment_id)}"
        for experiment in experiments
        if experiment.name != "Default"
    ][:limit]


def run_ui(tracking_uri: str, port: int) -> int:
    """Serve until Ctrl-C or SIGTERM (exit code 0); 1 if the server fails to start or exits on
    its own. Bad input raises :class:`ConfigError` before anything starts."""
    with sigterm_as_interrupt():
        try:
            with serve(tracking_uri, port) as server:
                print(
                    f"MLflow UI on {server.tracking_uri}: {server.url}  (Ctrl-C to stop)",
                    *sweep_links(server),
                    sep="\n",
                    flush=True,
                )
                code = server.process.wait()
                print(
                    "study: error: mlflow server exited with code "
                    f"{code}:\n{server.output.text(wait=5)}",
                    file=sys.stderr,
                )
                return 1
        except KeyboardInterrupt:
            print("mlflow server stopped", flush=True)
            return 0
        except ServerError as error:
            print(f"study: error: {error}", file=sys.stderr)
            return 1
