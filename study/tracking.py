"""MLflow tracking of a sweep: one parent run per sweep, one child run per trial.

The entry point creates the experiment and the parent run once. Each trial's driver creates (or,
when resumed, finds) its child run by the ``study.trial_id`` tag and logs its params and
artifacts; the Tune callback on the sweep driver logs per-epoch metrics (epoch as the step) and
sets every child's terminal status: FINISHED, KILLED (``study.stopped_by=asha``), FAILED with
``study.stopped_by`` = ``diverged`` or ``collapsed`` and ``study.stop_reason`` for a trial that
stopped itself, or FAILED with ``study.error``.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from ray.tune import Callback
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY

from study.layout import (  # noqa: F401 (re-exported)
    ERROR_TAG,
    NODES_TAG,
    ROLE_TAG,
    STOP_REASON_TAG,
    STOPPED_BY_TAG,
    STUDY_TAG,
    TRIAL_TAG,
    local_artifact_root,
    resolve_tracking_uri,
)
from study.outbox import Outbox
from study.search import stop_reason_of, stopped_early
from trainables.config import TrainConfig, flatten
from trainables.health import reason_kind
from trainables.ray_trainable import NODES_KEY
from trainables.train import CHECKPOINT_FILE, MARGIN_MEAN
from trainables.view_stats import REALISED_METRICS, VIEW_STATS_FILE
from trainables.validation import ConfigError

logger = logging.getLogger(__name__)

METRICS = (
    "loss", "knn_top1", "knn_top5", "z_std", "floor_active", "images_per_s", "lr",
    *REALISED_METRICS, "skipped_images", MARGIN_MEAN,
)
EVERY_EPOCH_METRIC = "lr"  # logged for every epoch, finite even when the loss is not
MAX_PARAM_LENGTH = 6000
BACKBONE_PREFIX = "backbone."


REACHABILITY_TIMEOUT_S = 10.0


CREDENTIALS_FROM_ENV = "MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"


def redacted(uri: str) -> str:
    """``uri`` with any user and password in it replaced by ``***``."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def check_tracking_store(uri: str, timeout: float = REACHABILITY_TIMEOUT_S) -> str:
    """Refuse a store the sweep could not log to, before any trial is launched: a tracking
    server that does not answer, or a sqlite file in a folder that does not exist. Credentials
    come from the environment only: a URI with a user or password in it is refused (it would be
    recorded with the sweep's config), and the message does not repeat them."""
    if redacted(uri) != uri:
        raise ConfigError("tracking_uri", redacted(uri), f"a URI without credentials (set {CREDENTIALS_FROM_ENV} in the environment)")
    if uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                if response.status != 200:
                    raise OSError(f"HTTP {response.status}")
        except (OSError, urllib.error.URLError) as error:
            raise ConfigError("tracking_uri", uri, f"a reachable MLflow tracking server ({url} did not answer: {error})") from error
    elif uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///"):]).parent
        if not folder.is_dir():
            raise ConfigError("tracking_uri", uri, f"a sqlite file in an existing folder ({folder} does not exist)")
    return uri


def as_params(config: dict[str, Any]) -> list[Param]:
    return [Param(key, str(value)[:MAX_PARAM_LENGTH]) for key, value in sorted(flatten(config).items())]


@dataclass(frozen=True)
class Tracking:
    """Where a sweep's runs go. Picklable, so trials on any node can use it."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    study_name: str

    def client(self) -> MlflowClient:
        return MlflowClient(self.tracking_uri)

    def find_trial_run(self, trial_id: str) -> str | None:
        runs = self.client().search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{TRIAL_TAG}` = '{trial_id}' and tags.`{MLFLOW_PARENT_RUN_ID}` = '{self.parent_run_id}'",
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def trial_run(self, trial_id: str, run_name: str) -> str:
        """The child run of ``trial_id``, created on first use."""
        existing = self.find_trial_run(trial_id)
        if existing is not None:
            return existing
        run = self.client().create_run(
            self.experiment_id,
            run_name=run_name,
            tags={MLFLOW_PARENT_RUN_ID: self.parent_run_id, TRIAL_TAG: trial_id, STUDY_TAG: self.study_name, ROLE_TAG: "trial"},
        )
        return run.info.run_id

    def trial_run_ids(self) -> dict[str, str]:
        """``trial_id -> run_id`` of the sweep's child runs."""
        return {run.data.tags.get(TRIAL_TAG): run.info.run_id for run in self.child_runs()}

    def child_runs(self) -> list:
        return self.client().search_runs(
            [self.experiment_id], filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{self.parent_run_id}'", max_results=10_000
        )


def get_or_create_experiment(client: MlflowClient, name: str, tracking_uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=local_artifact_root(tracking_uri))


def start_sweep(tracking_uri: str, experiment_name: str, study_name: str, params: dict[str, Any]) -> Tracking:
    """Create the experiment (once, here on the entry point) and the sweep's parent run."""
    client = MlflowClient(tracking_uri)
    experiment_id = get_or_create_experiment(client, experiment_name, tracking_uri)
    run = client.create_run(experiment_id, run_name=study_name, tags={STUDY_TAG: study_name, ROLE_TAG: "sweep"})
    client.log_batch(run.info.run_id, params=as_params(params))
    return Tracking(tracking_uri, experiment_id, run.info.run_id, study_name)


def metrics_of(result: dict[str, Any], step: int, timestamp: int) -> list[Metric]:
    return [
        Metric(key, float(result[key]), timestamp, step)
        for key in METRICS
        if isinstance(result.get(key), (int, float)) and math.isfinite(result[key])
    ]


def logged_epochs(client: MlflowClient, run_id: str) -> dict[int, dict[str, float]]:
    """epoch -> the metrics a trial's run holds for it."""
    epochs: dict[int, dict[str, float]] = {}
    for key in METRICS:
        for point in client.get_metric_history(run_id, key):
            epochs.setdefault(int(point.step), {})[key] = point.value
    return epochs


def backbone_state(checkpoint_dir: Path) -> dict[str, Any]:
    import torch

    state = torch.load(checkpoint_dir / CHECKPOINT_FILE, map_location="cpu", weights_only=True)["model"]
    return {key[len(BACKBONE_PREFIX):]: value for key, value in state.items() if key.startswith(BACKBONE_PREFIX)}


def log_checkpoint_artifacts(client: MlflowClient, run_id: str, checkpoint_path: str, backbone: bool, storage: str | None = None) -> None:
    """Log a checkpoint's realised-view histograms (``view_stats.json``) and, if ``backbone``,
    its backbone weights as ``backbone.pt``. ``checkpoint_path`` is a path in the filesystem of
    the sweep's ``storage`` (downloaded first from object storage)."""
    import torch
    from ray.train import Checkpoint

    from study.storage import SweepStorage

    filesystem = SweepStorage(storage).filesystem()[0] if storage and SweepStorage(storage).is_uri else None
    checkpoint = Checkpoint(checkpoint_path, filesystem=filesystem)
    with checkpoint.as_directory() as directory, tempfile.TemporaryDirectory() as scratch:
        view_stats = Path(directory) / VIEW_STATS_FILE
        if view_stats.is_file():
            client.log_artifact(run_id, str(view_stats))
        if backbone:
            path = Path(scratch) / "backbone.pt"
            torch.save(backbone_state(Path(directory)), path)
            client.log_artifact(run_id, str(path))


def read_error(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    if path and Path(path).is_file():
        return Path(path).read_text()[-4000:]
    return "trial failed (no error file)"


class MlflowTrialCallback(Callback):
    """Tune callback on the sweep driver: per-epoch metrics and terminal statuses of children,
    written through the sweep's :class:`~study.outbox.Outbox` so that a tracking server that
    drops out never stops the sweep."""

    def __init__(self, outbox: Outbox, max_epochs: int, base_config: dict[str, Any], storage: str | None = None) -> None:
        self.outbox = outbox
        self.max_epochs = max_epochs
        self.base_config = base_config
        self.storage = storage
        self.nodes: dict[str, list[str]] = {}

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        metrics = {metric.key: metric.value for metric in metrics_of(result, step, 0)}
        self.outbox.submit(
            "metrics", trial=trial.trial_id, name=str(trial), step=step, once_by=EVERY_EPOCH_METRIC,
            metrics=metrics, timestamp=int(time.time() * 1000),
        )
        self._tag_nodes(trial, str(result.get(NODES_KEY) or ""))

    def _tag_nodes(self, trial: Any, reported: str) -> None:
        """``study.nodes``: every Ray node the trial's workers ran on, updated when it moves."""
        seen = self.nodes.setdefault(trial.trial_id, [])
        new = [node for node in reported.split(",") if node and node not in seen]
        if new:
            seen.extend(new)
            self.outbox.submit("log", trial=trial.trial_id, name=str(trial), tags={NODES_TAG: ",".join(seen)})

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        reason = stop_reason_of(trial.last_result)
        stopped = stopped_early(trial.last_result, self.max_epochs)
        checkpoint_path = (trial.last_result or {}).get(CHECKPOINT_PATH_KEY)
        self._ensure_params(trial)
        if checkpoint_path:
            self.outbox.submit(
                "checkpoint_artifacts", trial=trial.trial_id, name=str(trial), checkpoint=checkpoint_path,
                backbone=not stopped and reason is None, storage=self.storage,
            )
        if reason is not None:
            status, tags = RunStatus.FAILED, {STOPPED_BY_TAG: reason_kind(reason), STOP_REASON_TAG: reason}
        elif stopped:
            status, tags = RunStatus.KILLED, {STOPPED_BY_TAG: "asha", "study.stopped_at_epoch": str(int(trial.last_result.get("epoch", 0)))}
        else:
            status, tags = RunStatus.FINISHED, {}
        self.outbox.submit("close", trial=trial.trial_id, name=str(trial), status=RunStatus.to_string(status), tags=tags)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ensure_params(trial)
        self.outbox.submit(
            "close", trial=trial.trial_id, name=str(trial), status=RunStatus.to_string(RunStatus.FAILED),
            tags={ERROR_TAG: read_error(trial)[:MAX_PARAM_LENGTH]},
        )

    def _ensure_params(self, trial: Any) -> None:
        """The trial's params, in case its own start-up logging met an unreachable server
        (params already logged are left as they are)."""
        config = TrainConfig.from_dict(self.base_config).replace(**trial.config)
        params = {param.key: param.value for param in as_params(config.to_dict())}
        self.outbox.submit("log", trial=trial.trial_id, name=str(trial), params=params)


def close_open_children(tracking: Tracking, status: str) -> int:
    """Terminate children still RUNNING (a trial the sweep never heard back from)."""
    client = tracking.client()
    closed = 0
    for run in tracking.child_runs():
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, status)
            closed += 1
    return closed
