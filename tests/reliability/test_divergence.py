"""A trial whose training diverges stops itself after that epoch, on a real local Ray cluster with
a real MLflow store: FAILED with its reason in MLflow, DIVERGED in the Parquet results, FAIL in
the Optuna study, and no epoch run after it."""

import optuna
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from study import StudyConfig, run_study
from study.vocabulary import STOP_REASON_TAG, STOPPED_BY_TAG
from tests.real_sweeps import QUICK

pytestmark = pytest.mark.ray

EPOCHS = 4


def one_trial_sweep(root, name: str, overrides: dict):
    config = StudyConfig(
        space="overlap",
        grid=True,
        grid_only={"views.params.overlap": [0.5]},
        epochs=EPOCHS,
        grace_period=EPOCHS,
        overrides={**QUICK, **overrides},
        name=name,
        storage=str(root / "runs"),
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
    )
    result = run_study(config)
    return result, MlflowClient(result.tracking.tracking_uri)


@pytest.fixture(scope="module")
def diverged(local_ray, tmp_path_factory):
    return one_trial_sweep(tmp_path_factory.mktemp("diverged"), "diverges", {"optim.base_lr": 1e8})


def test_the_results_table_says_diverged_after_one_epoch(diverged):
    result, _ = diverged
    (row,) = pq.read_table(result.trials_path).to_pylist()
    assert row["status"] == "DIVERGED" and row["epochs_run"] == 1
    assert row["stop_reason"].startswith("diverged: loss is nan at epoch 1")
    assert pq.read_table(result.epochs_path).num_rows == 1, "no epoch after the one that diverged"


def test_mlflow_has_the_status_the_reason_and_one_step(diverged):
    result, client = diverged
    (run,) = result.tracking.child_runs()
    assert run.info.status == "FAILED"
    assert run.data.tags[STOPPED_BY_TAG] == "diverged"
    assert run.data.tags[STOP_REASON_TAG].startswith("diverged: loss is nan")
    assert [metric.step for metric in client.get_metric_history(run.info.run_id, "lr")] == [1]
    assert "loss" not in run.data.metrics and "knn_top1" not in run.data.metrics, (
        "non-finite values are not logged"
    )
    artifacts = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
    assert "backbone.pt" not in artifacts and "config.yaml" in artifacts
    parent = client.get_run(result.tracking.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert (
        parent.data.metrics["trials_diverged"] == 1 and parent.data.metrics["trials_finished"] == 0
    )


def test_optuna_is_told_the_trial_failed_and_why(diverged):
    result, _ = diverged
    study = optuna.load_study(
        study_name=result.name, storage=f"sqlite:///{result.directory / 'optuna.db'}"
    )
    (trial,) = study.trials
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["stop_reason"].startswith("diverged")


@pytest.fixture(scope="module")
def collapsed(local_ray, tmp_path_factory):
    """``z_std * sqrt(d)`` is at most 1 for L2-normalised outputs, so a collapse ratio of 1 makes
    every epoch count as collapsed: the run must stop after ``collapse_epochs`` of them."""
    return one_trial_sweep(
        tmp_path_factory.mktemp("collapsed"),
        "collapses",
        {"health.collapse_ratio": 1.0, "health.collapse_epochs": 2},
    )


def test_a_collapsed_trial_stops_after_collapse_epochs_with_its_reason_everywhere(collapsed):
    result, client = collapsed
    (row,) = pq.read_table(result.trials_path).to_pylist()
    assert row["status"] == "COLLAPSED" and row["epochs_run"] == 2
    assert row["stop_reason"].startswith("collapsed")
    assert pq.read_table(result.epochs_path)["epoch"].to_pylist() == [1, 2]
    (run,) = result.tracking.child_runs()
    assert run.info.status == "FAILED" and run.data.tags[STOPPED_BY_TAG] == "collapsed"
    assert [metric.step for metric in client.get_metric_history(run.info.run_id, "lr")] == [1, 2]
    assert client.get_run(result.tracking.parent_run_id).data.metrics["trials_collapsed"] == 1
    study = optuna.load_study(
        study_name=result.name, storage=f"sqlite:///{result.directory / 'optuna.db'}"
    )
    (trial,) = study.trials
    assert trial.state == TrialState.FAIL and trial.user_attrs["stop_reason"].startswith(
        "collapsed"
    )
