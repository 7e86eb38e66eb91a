"""Sweep storage: folders, and pyarrow.fs URIs against a real S3 API (moto's server on
127.0.0.1, reached through pyarrow's S3 filesystem as any bucket would be)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow.fs
import pytest

from study.storage import MIRROR_VARIABLE, SweepStorage
from study.vocabulary import DRIVER_FILES
from tests.s3 import BUCKET
from trainables.validation import ConfigError


def write_driver_files(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "study.json").write_text('{"name": "sweep"}')
    (directory / "results").mkdir(exist_ok=True)
    (directory / "results" / "trials.parquet").write_bytes(b"PAR1 not really")
    with sqlite3.connect(directory / "optuna.db") as database:
        database.execute("create table trials (id integer)")
        database.executemany("insert into trials values (?)", [(1,), (2,)])


def test_a_folder_is_its_own_local_root(tmp_path):
    storage = SweepStorage(str(tmp_path / "runs"))
    assert not storage.is_uri and storage.shared_folder == tmp_path / "runs"
    assert storage.directory("a") == tmp_path / "runs" / "a"
    assert storage.remote("a", "train") == str(tmp_path / "runs" / "a" / "train")
    assert storage.tune_root == str(tmp_path / "runs")
    write_driver_files(storage.directory("a"))
    assert storage.names() == ["a"] and storage.exists("a") and not storage.exists("b")
    assert storage.pull("a") == storage.directory("a")


@pytest.mark.parametrize("name", ["../escape", "a/b", ".."])
def test_a_name_cannot_leave_the_storage_root(tmp_path, name):
    for location in (str(tmp_path), f"s3://{BUCKET}/runs"):
        with pytest.raises(ConfigError, match="name=.*a plain name inside the storage root"):
            SweepStorage(location).directory(name)


def test_an_unknown_scheme_is_refused_naming_the_field():
    with pytest.raises(
        ConfigError,
        match=r"storage='ftp://host/runs' is invalid: "
        r"expected a folder or a pyarrow.fs URI with a scheme of",
    ):
        SweepStorage("ftp://host/runs")


def test_a_uri_keeps_its_query_and_mirrors_driver_files_locally(monkeypatch, tmp_path):
    monkeypatch.setenv(MIRROR_VARIABLE, str(tmp_path / "mirror"))
    storage = SweepStorage(f"s3://{BUCKET}/runs?endpoint_override=127.0.0.1:9&scheme=http")
    assert storage.is_uri and storage.shared_folder is None
    assert storage.tune_root == storage.location
    assert (
        storage.remote("sweep", "train")
        == f"s3://{BUCKET}/runs/sweep/train?endpoint_override=127.0.0.1:9&scheme=http"
    )
    assert storage.directory("sweep").is_relative_to(tmp_path / "mirror")


def test_driver_files_round_trip_through_s3(s3, monkeypatch, tmp_path):
    storage = SweepStorage(s3)
    monkeypatch.setenv(MIRROR_VARIABLE, str(tmp_path / "machine-a"))
    write_driver_files(storage.directory("sweep"))
    (
        storage.directory("sweep") / "trial_0001"
    ).mkdir()  # Tune's own folders are not the driver's to copy
    assert not storage.exists("sweep")
    storage.push("sweep")
    assert storage.exists("sweep") and storage.names() == ["sweep"]
    filesystem, remote = storage.filesystem("sweep")
    uploaded = {
        info.base_name for info in filesystem.get_file_info(pyarrow.fs.FileSelector(remote))
    }
    assert uploaded == {"study.json", "results", "optuna.db"} and uploaded <= set(DRIVER_FILES)

    monkeypatch.setenv(MIRROR_VARIABLE, str(tmp_path / "machine-b"))
    pulled = storage.pull("sweep")
    assert pulled.is_relative_to(tmp_path / "machine-b")
    assert (pulled / "study.json").read_text() == '{"name": "sweep"}'
    assert (pulled / "results" / "trials.parquet").read_bytes() == b"PAR1 not really"
    with sqlite3.connect(pulled / "optuna.db") as database:
        assert database.execute("select id from trials order by id").fetchall() == [(1,), (2,)]


def test_a_bucket_that_does_not_exist_is_reported_as_missing_not_crashing(s3):
    storage = SweepStorage(s3.replace(BUCKET, "no-such-bucket"))
    assert not storage.exists("sweep")


@pytest.mark.ray
def test_a_sweep_on_s3_is_read_back_on_another_machine(s3, monkeypatch, tmp_path):
    """A real sweep (local Ray, Train checkpoints and Tune's state written to the bucket); then,
    from a second machine's empty mirror and with the tables deleted from the bucket, ``study
    ls`` finds it and ``study export`` rebuilds its tables from the Tune state in the bucket,
    with the values the MLflow runs hold, and pushes them back."""
    from mlflow.tracking import MlflowClient

    from study import StudyConfig, run_study
    from study.stored import export_study, list_studies
    from tests.real_sweeps import QUICK
    from tests.study.test_sweep import assert_tables_match_mlflow, trials_from_mlflow

    monkeypatch.setenv(MIRROR_VARIABLE, str(tmp_path / "machine-a"))
    result = run_study(
        StudyConfig(
            space="overlap",
            grid=True,
            grid_only={"views.params.overlap": [0.3, 0.7]},
            epochs=2,
            grace_period=2,
            max_concurrent_trials=2,
            overrides=dict(QUICK),
            name="on-s3",
            storage=s3,
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        )
    )
    assert result.trials["status"].to_pylist() == ["FINISHED", "FINISHED"]
    storage = SweepStorage(s3)
    filesystem, remote = storage.filesystem("on-s3")
    stored = [
        info.path.removeprefix(remote + "/")
        for info in filesystem.get_file_info(pyarrow.fs.FileSelector(remote, recursive=True))
    ]
    assert any(path.startswith("train/") and "/checkpoint_" in path for path in stored), (
        "Train's checkpoints are in the bucket"
    )
    assert any(path.startswith("experiment_state") for path in stored), (
        "Tune's experiment state is in the bucket"
    )
    assert {"study.json", "optuna.db", "results/trials.parquet", "results/epochs.parquet"} <= set(
        stored
    )
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    for run_id in result.trials["mlflow_run_id"].to_pylist():
        assert "backbone.pt" in {artifact.path for artifact in client.list_artifacts(run_id)}, (
            "read back from the bucket"
        )

    monkeypatch.setenv(MIRROR_VARIABLE, str(tmp_path / "machine-b"))
    for table in ("trials.parquet", "epochs.parquet"):  # export must write them, not pull them
        filesystem.delete_file(f"{remote}/results/{table}")
    assert [listing.state.name for listing in list_studies(s3)] == ["on-s3"]
    assert list_studies(s3)[0].state.lifecycle == "finished"
    trials_path, epochs_path = export_study("on-s3", s3)
    assert trials_path.is_relative_to(tmp_path / "machine-b")
    expected = trials_from_mlflow(client, result.tracking.experiment_id)
    assert sorted(expected) == sorted(result.trials["trial_id"].to_pylist())
    assert_tables_match_mlflow(trials_path, epochs_path, expected)
    with filesystem.open_input_file(f"{remote}/results/trials.parquet") as pushed:
        assert pushed.read() == trials_path.read_bytes(), "the export is pushed to the bucket"
