"""Where a sweep runs: local Ray, or an existing (multi-node) Ray cluster, and what every node
of that cluster must share before a trial starts.

A sweep's driver connects with :func:`connect`. On a cluster of more than one node,
:func:`check_cluster` asks every node, with a zero-CPU task pinned to it, whether it sees the
sweep's storage folder (a marker file the driver just wrote), the dataset folder and the MLflow
tracking server; a node that does not is named in a :class:`ConfigError` before any trial is
launched. Ray has required storage shared by all nodes for multi-node runs since 2.7: a trial
restarted on another node resumes from the checkpoints its first node wrote.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from trainables.validation import ConfigError

logger = logging.getLogger(__name__)

AUTH_HINT = (
    "Ray 2.60 clusters started by `ray start`/`ray.init()` require a token unless "
    "RAY_AUTH_MODE=disabled was set when they started: give the driver the cluster's token "
    "(`ray get-auth-token` on the head node, then RAY_AUTH_TOKEN=... or "
    "RAY_AUTH_TOKEN_PATH=<file>), or run driver and cluster with the same RAY_AUTH_MODE"
)
CONNECT_TIMEOUT_S = 10
AUTH_REFUSALS = (
    "InvalidAuthToken",  # the GCS's status when a token is missing or wrong
    # the Ray Client server's, which Ray Client only logs at debug level
    "Invalid or missing authentication token",
)
CLIENT_LOGGER = "ray.util.client.worker"
# Ray Client's error when its server's process did not start.
CLIENT_INIT_FAILURE = "Initialization failure from server"
CLIENT_INIT_ATTEMPTS = 3
CLIENT_INIT_PAUSE_S = 2.0
CLIENT_PREFIX = (
    "ray://"  # Ray Client: Tune then runs the sweep's driver loop on the cluster's head node
)
SERVER_SCHEMES = ("http://", "https://", "databricks")
LOOK_TIMEOUT_S = 120
PROBE_FILE = ".study-shared-{token}"


def cluster_address(address: str | None) -> str | None:
    """The cluster to join: ``--address``, else ``RAY_ADDRESS``; None means a local Ray."""
    return address or os.environ.get("RAY_ADDRESS") or None


def connect(address: str | None) -> bool:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``: ``auto``, ``host:6379``,
    ``ray://host:10001``), else start a local Ray whose dashboard binds to 127.0.0.1. Returns
    True when this call initialised Ray: the caller's ``ray.shutdown()`` then stops the local
    Ray, or disconnects from the cluster. A cluster that does not answer or
    refuses this driver's token raises :class:`ConfigError` naming the address."""
    if ray.is_initialized():
        return False
    address = cluster_address(address)
    if not address:
        ray.init(include_dashboard=True, dashboard_host="127.0.0.1", configure_logging=False)
        return True
    unreachable = _unreachable(address)
    if unreachable is not None:
        raise ConfigError(
            "address",
            address,
            f"the address of a running Ray cluster: `ray start --head` prints it, `auto` finds one "
            f"started on this machine, ray://host:10001 reaches its client server ({unreachable})",
        )
    client_log: list[str] = []
    try:
        with _recorded(CLIENT_LOGGER, client_log):
            _join(address)
        return True
    except ray.exceptions.AuthenticationError as error:
        raise ConfigError(
            "address",
            address,
            f"a Ray cluster that accepts this driver's token ({error.message}). {AUTH_HINT}",
        ) from error
    except (ConnectionError, RuntimeError) as error:
        refused = _auth_refusal(error, client_log)
        if refused is not None:
            raise ConfigError(
                "address",
                address,
                f"a Ray cluster that accepts this driver's token ({refused}). {AUTH_HINT}",
            ) from error
        if not isinstance(error, ConnectionError):
            raise
        raise ConfigError(
            "address",
            address,
            f"the address of a running Ray cluster: `ray start --head` prints it, `auto` finds "
            "one started on this machine, ray://host:10001 reaches its client server "
            f"({_headline(error)})",
        ) from error


def _join(address: str) -> None:
    """``ray.init(address)``; over Ray Client, tried again (up to :data:`CLIENT_INIT_ATTEMPTS`
    times) when the client server could not start this driver's server process: it then answers
    "Initialization failure from server" and a new attempt gets a new process on another port."""
    if not address.startswith(CLIENT_PREFIX):
        ray.init(address=address, configure_logging=False)
        return
    for attempt in range(1, CLIENT_INIT_ATTEMPTS + 1):
        try:
            ray.init(address=address)
            return
        except ConnectionAbortedError as error:
            if CLIENT_INIT_FAILURE not in str(error) or attempt == CLIENT_INIT_ATTEMPTS:
                raise
            logger.warning(
                "the Ray Client server at %s could not start a server for this driver "
                "(attempt %d of %d: %s); "
                "trying again",
                address,
                attempt,
                CLIENT_INIT_ATTEMPTS,
                _headline(error),
            )
            time.sleep(CLIENT_INIT_PAUSE_S)


def _unreachable(address: str) -> str | None:
    """Why nothing listens at a ``host:port`` or ``ray://host:port`` address (None if something
    does, or for ``auto``): ``ray.init`` would retry such an address for minutes."""
    host, separator, port = address.removeprefix(CLIENT_PREFIX).rpartition(":")
    if not separator or not port.isdigit():
        return None
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as error:
        return f"nothing answers at {host}:{port}: {error}"


def _auth_refusal(error: BaseException, client_log: list[str]) -> str | None:
    """The cluster's refusal of this driver's token, from anywhere in ``error``'s causes (Ray
    wraps the GCS's InvalidAuthToken in a RuntimeError, then in a ConnectionError) or in what
    Ray Client logged while it tried (it reports only "ray client connection timeout")."""
    lines = list(client_log)
    while error is not None:
        lines += str(error).splitlines()
        error = error.__cause__ or error.__context__
    return next(
        (line.strip()[:300] for line in lines if any(refusal in line for refusal in AUTH_REFUSALS)),
        None,
    )


class _Tap(logging.Filter):
    """Records every message of a logger, debug level included, and lets through only what the
    logger's own level let through before."""

    def __init__(self, records: list[str], level: int) -> None:
        super().__init__()
        self.records = records
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record.getMessage())
        return record.levelno >= self.level


@contextmanager
def _recorded(logger_name: str, records: list[str]) -> Iterator[None]:
    """Append everything ``logger_name`` logs, debug level included, to ``records``; what its
    handlers and its ancestors' handlers see is unchanged."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    tap = _Tap(records, logger.getEffectiveLevel())
    logger.addFilter(tap)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.setLevel(level)
        logger.removeFilter(tap)


def _headline(error: BaseException) -> str:
    """The error's first line; for a headline that ends in ``:`` (Ray Client's "Initialization
    failure from server:", then the server's traceback) the last line of what follows too."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()] or [
        type(error).__name__
    ]
    head = lines[0] if not lines[0].endswith(":") or len(lines) == 1 else f"{lines[0]} {lines[-1]}"
    return head[:300]


@dataclass(frozen=True)
class NodeView:
    """What one node of the cluster sees of the sweep's shared resources."""

    node_id: str
    address: str
    storage: bool
    data: bool
    tracking: str | None
    """None when the tracking server answered from this node, else why it did not."""


def alive_nodes() -> list[dict[str, Any]]:
    return [node for node in ray.nodes() if node.get("Alive")]


@ray.remote(num_cpus=0)
def _look(
    marker: str | None, token: str, data_root: str | None, tracking_uri: str | None
) -> NodeView:
    from study.ui import answers_http

    try:
        storage = marker is None or Path(marker).read_text() == token
    except OSError:
        storage = False
    answered = tracking_uri is None or answers_http(tracking_uri.rstrip("/"))
    return NodeView(
        ray.get_runtime_context().get_node_id(),
        ray.util.get_node_ip_address(),
        storage,
        data_root is None or Path(data_root).is_dir(),
        None if answered else f"{tracking_uri}/health did not answer",
    )


def look_from_every_node(
    storage_root: Path | None, data_root: str | None, tracking_uri: str | None
) -> list[NodeView]:
    """One :class:`NodeView` per alive node, each from a task pinned to that node
    (``storage_root=None``: object storage, shared by construction)."""
    token = secrets.token_hex(16)
    marker = None if storage_root is None else storage_root / PROBE_FILE.format(token=token)
    if marker is not None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(token)
    nodes = alive_nodes()
    try:
        return ray.get(
            [
                _look.options(
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
                ).remote(None if marker is None else str(marker), token, data_root, tracking_uri)
                for node in nodes
            ],
            timeout=LOOK_TIMEOUT_S,
        )
    except ray.exceptions.GetTimeoutError as error:
        addresses = [node["NodeManagerAddress"] for node in nodes]
        raise TimeoutError(
            f"the nodes {addresses} did not all answer the storage and tracking check within "
            f"{LOOK_TIMEOUT_S} s"
        ) from error
    finally:
        if marker is not None:
            marker.unlink(missing_ok=True)


def check_cluster(
    storage_root: Path | None, data_root: str | None, tracking_uri: str, experiment: str
) -> int:
    """On a multi-node cluster, refuse storage, data or tracking that some node cannot reach.
    Returns the number of alive nodes."""
    nodes = alive_nodes()
    if len(nodes) < 2:
        return len(nodes)
    if not tracking_uri.startswith(SERVER_SCHEMES):
        raise ConfigError(
            "tracking_uri",
            tracking_uri,
            f"an MLflow tracking server every node reaches (http://host:5000; see "
            f"docs/cluster.md) on a {len(nodes)}-node cluster: trials on other nodes "
            "cannot write a store or artifact folder on this machine's disk",
        )
    check_artifact_location(tracking_uri, experiment)
    views = look_from_every_node(
        storage_root,
        data_root,
        tracking_uri if tracking_uri.startswith(("http://", "https://")) else None,
    )
    blind = [view.address for view in views if not view.storage]
    if blind:
        raise ConfigError(
            "storage",
            str(storage_root),
            f"a folder shared by every node of the {len(views)}-node cluster (NFS, "
            f"a cluster filesystem) or a pyarrow.fs URI (s3://, gs://): nodes {blind} do not "
            "see it, and trials restarted there could not resume from their checkpoints",
        )
    missing = [view.address for view in views if not view.data]
    if missing:
        raise ConfigError(
            "data.root",
            data_root,
            f"a dataset folder every node sees: nodes {missing} do not have it",
        )
    unreachable = [f"{view.address}: {view.tracking}" for view in views if view.tracking]
    if unreachable:
        raise ConfigError(
            "tracking_uri",
            tracking_uri,
            f"a tracking server every node reaches ({'; '.join(unreachable)})",
        )
    return len(views)


def check_artifact_location(tracking_uri: str, experiment: str) -> str:
    """The sweep's experiment (created here if new) must keep artifacts where every node can
    write them: through the server (``mlflow-artifacts:``) or in object storage, not in a
    ``file:`` folder, which each node would write on its own disk."""
    from mlflow.tracking import MlflowClient

    from study.tracking import get_or_create_experiment

    client = MlflowClient(tracking_uri)
    location = client.get_experiment(
        get_or_create_experiment(client, experiment, tracking_uri)
    ).artifact_location
    if location.startswith(("file:", "/")):
        raise ConfigError(
            "tracking_uri",
            tracking_uri,
            f"a tracking server that takes artifacts itself (`mlflow server "
            f"--artifacts-destination DIR_OR_URI` without a file: --default-artifact-root) "
            f"or keeps them in object storage: experiment {experiment!r} stores them in "
            f"{location}, a folder each node would write on its own disk",
        )
    return location
