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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Experiment, Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from study.layout import local_artifact_root
from study.storage import SweepStorage
from study.vocabulary import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    INTERRUPT_STOPPER,
    ROLE_TAG,
    RUN_RUNNING,
    STOPPED_BY_TAG,
    STUDY_TAG,
    SWEEP_ROLE,
    TRACKED_METRICS,
    TRIAL_ROLE,
    TRIAL_TAG,
)
from trainables.config import flatten
from trainables.metrics import CHECKPOINT_FILE, VIEW_STATS_FILE
from trainables.validation import ConfigError

logger = logging.getLogger(__name__)

MAX_PARAM_LENGTH = 6000
MAX_CHILD_RUNS = 10_000
BACKBONE_PREFIX = "backbone."
REACHABILITY_TIMEOUT_S = 10.0
CREDENTIALS_FROM_ENV = (
    "MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
)


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
        raise ConfigError(
            "tracking_uri",
            redacted(uri),
            f"a URI without credentials (set {CREDENTIALS_FROM_ENV} in the environment)",
        )
    if uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                if response.status != 200:
                    raise OSError(f"HTTP {response.status}")
        except (OSError, urllib.error.URLError) as error:
            raise ConfigError(
                "tracking_uri",
                uri,
                f"a reachable MLflow tracking server ({url} did not answer: {error})",
            ) from error
    elif uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///") :]).parent
        if not folder.is_dir():
            raise ConfigError(
                "tracking_uri",
                uri,
                f"a sqlite file in an existing folder ({folder} does not exist)",
            )
    return uri


def as_params(config: dict[str, Any]) -> list[Param]:
    return [
        Param(key, str(value)[:MAX_PARAM_LENGTH]) for key, value in sorted(flatten(config).items())
    ]


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
            filter_string=f"tags.`{TRIAL_TAG}` = '{trial_id}' and tags.`{MLFLOW_PARENT_RUN_ID}` = "
            f"'{self.parent_run_id}'",
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def trial_run(self, trial_id: str, run_name: str) -> str:
        """The child run of ``trial_id``, created on first use."""
        existing = self.find_trial_run(trial_id)
        if existing is not None:
            self._reopen_interrupted(existing)
            return existing
        run = self.client().create_run(
            self.experiment_id,
            run_name=run_name,
            tags={
                MLFLOW_PARENT_RUN_ID: self.parent_run_id,
                TRIAL_TAG: trial_id,
                STUDY_TAG: self.study_name,
                ROLE_TAG: TRIAL_ROLE,
            },
        )
        return run.info.run_id

    def _reopen_interrupted(self, run_id: str) -> None:
        """A trial an interrupt cut runs again: RUNNING, its ``study.stopped_by`` gone."""
        client = self.client()
        run = client.get_run(run_id)
        if run.data.tags.get(STOPPED_BY_TAG) == INTERRUPT_STOPPER:
            client.delete_tag(run_id, STOPPED_BY_TAG)
            client.update_run(run_id, status=RUN_RUNNING)

    def trial_run_ids(self) -> dict[str, str]:
        """``trial_id -> run_id`` of the sweep's child runs."""
        return {run.data.tags.get(TRIAL_TAG): run.info.run_id for run in self.child_runs()}

    def child_runs(self) -> list:
        """The sweep's trial runs (at most :data:`MAX_CHILD_RUNS`)."""
        return self.client().search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{self.parent_run_id}'",
            max_results=MAX_CHILD_RUNS,
        )


def get_or_create_experiment(client: MlflowClient, name: str, tracking_uri: str) -> str:
    """The id of experiment ``name``, created (or restored) if need be, and tagged as model
    training (``mlflow.experimentKind``) unless it has a kind already: an older sweep's
    experiment gets the tag on its next run, and a kind a user chose is kept."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(
            name,
            artifact_location=local_artifact_root(tracking_uri),
            tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
        )
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    tag_experiment_kind(client, experiment)
    return experiment.experiment_id


def tag_experiment_kind(client: MlflowClient, experiment: Experiment) -> None:
    """Tag ``experiment`` as model training unless it has a kind already."""
    if not experiment.tags.get(EXPERIMENT_KIND_TAG):
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)


def start_sweep(
    tracking_uri: str, experiment_name: str, study_name: str, params: dict[str, Any]
) -> Tracking:
    """Create the experiment (once, here on the entry point) and the sweep's parent run."""
    client = MlflowClient(tracking_uri)
    experiment_id = get_or_create_experiment(client, experiment_name, tracking_uri)
    run = client.create_run(
        experiment_id, run_name=study_name, tags={STUDY_TAG: study_name, ROLE_TAG: SWEEP_ROLE}
    )
    client.log_batch(run.info.run_id, params=as_params(params))
    return Tracking(tracking_uri, experiment_id, run.info.run_id, study_name)


def metrics_of(result: dict[str, Any], step: int, timestamp: int) -> list[Metric]:
    return [
        Metric(key, float(result[key]), timestamp, step)
        for key in TRACKED_METRICS
        if isinstance(result.get(key), (int, float)) and math.isfinite(result[key])
    ]


def logged_epochs(
    client: MlflowClient, run_id: str, metrics: tuple[str, ...] = TRACKED_METRICS
) -> dict[int, dict[str, float]]:
    """epoch -> the ``metrics`` a trial's run holds for it."""
    epochs: dict[int, dict[str, float]] = {}
    for key in metrics:
        for point in client.get_metric_history(run_id, key):
            epochs.setdefault(int(point.step), {})[key] = point.value
    return epochs


def backbone_state(checkpoint_dir: Path) -> dict[str, Any]:
    import torch

    state = torch.load(checkpoint_dir / CHECKPOINT_FILE, map_location="cpu", weights_only=True)[
        "model"
    ]
    return {
        key[len(BACKBONE_PREFIX) :]: value
        for key, value in state.items()
        if key.startswith(BACKBONE_PREFIX)
    }


def log_checkpoint_artifacts(
    client: MlflowClient,
    run_id: str,
    checkpoint_path: str,
    backbone: bool,
    storage: str | None = None,
) -> None:
    """Log a checkpoint's realised-view histograms (``view_stats.json``) and, if ``backbone``,
    its backbone weights as ``backbone.pt``. ``checkpoint_path`` is a path in the filesystem of
    the sweep's ``storage`` (downloaded first from object storage)."""
    import torch
    from ray.train import Checkpoint

    filesystem = (
        SweepStorage(storage).filesystem()[0] if storage and SweepStorage(storage).is_uri else None
    )
    checkpoint = Checkpoint(checkpoint_path, filesystem=filesystem)
    with checkpoint.as_directory() as directory, tempfile.TemporaryDirectory() as scratch:
        view_stats = Path(directory) / VIEW_STATS_FILE
        if view_stats.is_file():
            client.log_artifact(run_id, str(view_stats))
        if backbone:
            path = Path(scratch) / "backbone.pt"
            torch.save(backbone_state(Path(directory)), path)
            client.log_artifact(run_id, str(path))


def close_open_children(tracking: Tracking, status: str, tags: dict[str, str] | None = None) -> int:
    """Terminate children still RUNNING (a trial the sweep never heard back from, or one an
    interrupt cut), tagged with ``tags``."""
    client = tracking.client()
    closed = 0
    for run in tracking.child_runs():
        if run.info.status == RUN_RUNNING:
            if tags:
                client.log_batch(
                    run.info.run_id, tags=[RunTag(key, value) for key, value in tags.items()]
                )
            client.set_terminated(run.info.run_id, status)
            closed += 1
    return closed
