"""The names a sweep's records share, defined once: the metrics its trials report (MLflow metric
keys and Parquet columns alike, named by :mod:`trainables.metrics`), its files, the MLflow tags of
its runs, and the outcomes of its trials (:class:`Outcome`, with how each is written to and read
back from MLflow).

Importable without Ray, MLflow or torch: ``study/``, ``dashboards/``, the results and the CLI all
name things through this module.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from trainables.health import COLLAPSED as COLLAPSED_KIND
from trainables.health import DIVERGED as DIVERGED_KIND
from trainables.health import STOP_REASON_KEY, reason_kind
from trainables.metrics import (
    DISTANCE_MEAN,
    EPOCH,
    FLOOR_ACTIVE,
    IMAGES_PER_S,
    KNN_TOP1,
    KNN_TOP5,
    LOSS,
    LR,
    MARGIN_MEAN,
    OVERLAP_MEAN,
    PHI_MEAN,
    REALISED_METRICS,
    SKIPPED_IMAGES,
    Z_STD,
)

# Per epoch, what every trial reports (named by trainables.metrics) and the sweep logs and exports.
TRACKED_METRICS = (
    LOSS,
    KNN_TOP1,
    KNN_TOP5,
    Z_STD,
    FLOOR_ACTIVE,
    IMAGES_PER_S,
    LR,
    *REALISED_METRICS,
    SKIPPED_IMAGES,
    MARGIN_MEAN,
)
"""Logged to each trial's MLflow run (epoch as the step) and kept in ``epochs.parquet``."""
EPOCH_COLUMNS = (EPOCH, *TRACKED_METRICS)
SUMMARY_METRICS = (
    KNN_TOP1,
    KNN_TOP5,
    LOSS,
    Z_STD,
    FLOOR_ACTIVE,
    OVERLAP_MEAN,
    PHI_MEAN,
    DISTANCE_MEAN,
)
"""Summarised per trial in ``trials.parquet`` as ``final_<metric>`` and ``best_<metric>``."""
EVERY_EPOCH_METRIC = LR
"""Logged for every epoch, finite even when the loss is not."""
SCORE = KNN_TOP1
"""What the searcher, ASHA and a sweep's best trial rank by (higher is better)."""
FINAL_SCORE, BEST_SCORE = f"final_{SCORE}", f"best_{SCORE}"

# The parent run's baselines: the untrained encoder once per seed (MLflow step = seed) and their
# mean, and the raw pixels (see trainables.baselines).
UNTRAINED_METRIC = "untrained_knn_top1"
UNTRAINED_MEAN_METRIC = "untrained_knn_top1_mean"
PIXELS_METRIC = "pixels_knn_top1"
# The parent run's early-stopping check (study.early_stopping): Spearman's rho between the
# trials' knn_top1 at ASHA's grace period and their final knn_top1, over the trials that ran
# every epoch, and how many trials it ranked.
RANK_CORRELATION_METRIC = "rank_correlation_at_grace"
RANK_CORRELATION_TRIALS_METRIC = "rank_correlation_trials"

DEFAULT_STORAGE = "runs"
"""Where sweeps are kept unless ``--storage`` says otherwise (a folder, or an object-store URI)."""
# A sweep's files, under STORAGE/NAME/.
STATE_FILE = "study.json"
OPTUNA_FILE = "optuna.db"
OUTBOX_FILE = "tracking-outbox.jsonl"
RESULTS_DIR = "results"
REPORT_DIR = "report"
TRAIN_DIR = "train"
DRIVER_FILES = (STATE_FILE, OPTUNA_FILE, OUTBOX_FILE, RESULTS_DIR, REPORT_DIR)
"""What the sweep's driver writes itself (mirrored to object storage); Tune and Train write the
rest."""
# In RESULTS_DIR.
TRIALS_FILE = "trials.parquet"
EPOCHS_FILE = "epochs.parquet"
BASELINES_FILE = "baselines.parquet"
SUMMARY_FILE = "summary.txt"
# Artifacts of a trial's MLflow run.
CONFIG_ARTIFACT = "config.yaml"
VIEW_PAIRS_FILE = "view_pairs.png"
REPLACED_DIR = ".replaced"
"""Under the storage root: the directories of overwritten sweeps, never deleted."""

# MLflow tags. The parent run has role "sweep", each child role "trial" and the trial id.
STUDY_TAG = "study.name"
ROLE_TAG = "study.role"
SWEEP_ROLE, TRIAL_ROLE = "sweep", "trial"
TRIAL_TAG = "study.trial_id"
STOPPED_BY_TAG = "study.stopped_by"
STOPPED_AT_TAG = "study.stopped_at_epoch"
STOP_REASON_TAG = "study.stop_reason"
ERROR_TAG = "study.error"
NODES_TAG = "study.nodes"
"""The Ray node IDs a trial's workers ran on."""
STATE_TAG = "study.state"
BEST_TRIAL_TAG = "study.best_trial"
BEST_OVERRIDES_TAG = "study.best_overrides"
BEST_RULE_TAG = "study.best_rule"
RUNG_EPOCHS_TAG = "study.rung_epochs"
EARLY_STOPPING_TAG = "study.early_stopping"
"""``asha`` or ``off``."""
ASHA_STOPPER = "asha"
INTERRUPT_STOPPER = "interrupt"
"""``study.stopped_by`` of a trial cut by SIGINT or SIGTERM (KILLED, until ``study resume``)."""
# The experiment's tag: its kind for MLflow, model training rather than GenAI. (MLflow 3.17's UI
# picks an experiment's pages from its GenAI / Model training switch, `?workflowType=`, instead.)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


# MLflow's run statuses (mlflow.entities.RunStatus, by name).
RUN_RUNNING, RUN_FINISHED, RUN_FAILED, RUN_KILLED = "RUNNING", "FINISHED", "FAILED", "KILLED"


class Outcome(StrEnum):
    """How a trial ended: ran every epoch, stopped by ASHA, raised, or stopped itself because
    its loss diverged or its representation collapsed (:mod:`trainables.health`)."""

    FINISHED = "FINISHED"
    STOPPED = "STOPPED"
    FAILED = "FAILED"
    DIVERGED = "DIVERGED"
    COLLAPSED = "COLLAPSED"

    @property
    def run_status(self) -> str:
        """The terminal status of the trial's MLflow run."""
        return _RUN_STATUS[self]

    @property
    def stopped_by(self) -> str | None:
        """The trial run's ``study.stopped_by`` tag (None: the run's status says it all)."""
        return _STOPPED_BY.get(self)

    @classmethod
    def of_result(cls, last: dict[str, Any] | None, max_epochs: int) -> Outcome:
        """The outcome of a trial that ended without raising, from its last reported result."""
        reason = stop_reason_of(last)
        if reason is not None:
            return cls(reason_kind(reason).upper())
        return cls.STOPPED if last is None or stopped_early(last, max_epochs) else cls.FINISHED

    @classmethod
    def of_run(cls, status: str, stopped_by: str | None) -> Outcome | str:
        """The outcome an MLflow run's status and ``study.stopped_by`` tag were written for; a
        run that has not ended gives its MLflow status (``RUNNING``, ``KILLED``)."""
        for outcome in cls:
            if outcome.run_status == status and outcome.stopped_by == (stopped_by or None):
                return outcome
        if status == cls.FAILED.run_status:
            return cls.FAILED
        return status


_RUN_STATUS = {
    Outcome.FINISHED: RUN_FINISHED,
    Outcome.STOPPED: RUN_KILLED,
    Outcome.FAILED: RUN_FAILED,
    Outcome.DIVERGED: RUN_FAILED,
    Outcome.COLLAPSED: RUN_FAILED,
}
_STOPPED_BY = {
    Outcome.STOPPED: ASHA_STOPPER,
    Outcome.DIVERGED: DIVERGED_KIND,
    Outcome.COLLAPSED: COLLAPSED_KIND,
}
OUTCOMES = tuple(Outcome)


def stopped_early(result: dict[str, Any] | None, max_epochs: int) -> bool:
    """A trial that ended without error before its last epoch was stopped, not finished."""
    return bool(result) and int(result.get(EPOCH, 0)) < max_epochs


def stop_reason_of(result: dict[str, Any] | None) -> str | None:
    """Why a trial stopped itself (diverged, collapsed), from its last result; None otherwise."""
    return (result or {}).get(STOP_REASON_KEY) or None
