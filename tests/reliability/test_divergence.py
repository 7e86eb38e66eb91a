"""A trial whose training diverges stops itself after that epoch, on a real local Ray cluster with
a real MLflow store: FAILED with its reason in MLflow, DIVERGED in the Parquet results, FAIL in
the Optuna study, and no epoch run after it."""

import optuna
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from study import StudyConfig, run_study
from study.layout import STOP_REASON_TAG, STOPPED_BY_TAG
from tests.real_sweeps import QUICK

EPOCHS = 4


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    root = tmp_path_factory.mktemp("diverged")
    config = StudyConfig(
        space="overlap", grid=True, grid_only={"views.params.overlap": [0.5]}, epochs=EPOCHS, grace_period=EPOCHS,
        overrides={**QUICK, "optim.base_lr": 1e8}, name="diverges", storage=str(root / "runs"),
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
    )
    result = run_study(config)
    return result, MlflowClient(result.tracking.tracking_uri)


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
    assert "loss" not in run.data.metrics and "knn_top1" not in run.data.metrics, "non-finite values are not logged"
    artifacts = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
    assert "backbone.pt" not in artifacts and "config.yaml" in artifacts
    parent = client.get_run(result.tracking.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["trials_diverged"] == 1 and parent.data.metrics["trials_finished"] == 0


def test_optuna_is_told_the_trial_failed_and_why(diverged):
    result, _ = diverged
    study = optuna.load_study(study_name=result.name, storage=f"sqlite:///{result.directory / 'optuna.db'}")
    (trial,) = study.trials
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["stop_reason"].startswith("diverged")
