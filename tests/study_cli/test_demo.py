"""``study demo`` end to end, as the README's first command runs it (with a test's budget, see
tests/real_sweeps.py): the embedded sweep on bundled data on the session's local Ray, its printed
summary, its MLflow record, its report and its Optuna study, each checked against the sweep's
Parquet tables read independently here."""

import re
from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from study.vocabulary import (
    BEST_TRIAL_TAG,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    OPTUNA_FILE,
    REPORT_DIR,
    RESULTS_DIR,
    ROLE_TAG,
    STOPPED_BY_TAG,
    TRIAL_TAG,
    TRIALS_FILE,
)
from tests.real_sweeps import SEARCH_TRIALS
from tests.sweep_checks import assert_optuna_mirrors_the_trials

ANNOUNCED = re.compile(r"^sweep (?P<name>\S+): search over overlap, (?P<trials>\d+) trials x ")
BEST = re.compile(r"^best knn_top1=(?P<score>[0-9.]+): trial (?P<trial>\S+) \(")
BASELINES = re.compile(r"^baselines: .*untrained.*pixel", re.IGNORECASE)
REPORT = re.compile(r"^report: (?P<path>\S+\.html)$")
FIGURES = re.compile(r"^figures: (?P<names>.+) \(PNG in (?P<directory>\S+)\)$")
MLFLOW_STATUS = {"FINISHED": "FINISHED", "STOPPED": "KILLED"}


def line(pattern: re.Pattern, printed: str) -> re.Match:
    found = [match for text in printed.splitlines() if (match := pattern.match(text))]
    assert len(found) == 1, f"one line matches {pattern.pattern!r} in:\n{printed}"
    return found[0]


@pytest.fixture(scope="module")
def demo(demo_run):
    result = demo_run.result
    name = line(ANNOUNCED, demo_run.printed)["name"]
    assert name == result.name
    trials = pq.read_table(result.directory / RESULTS_DIR / TRIALS_FILE).to_pylist()
    return demo_run.printed, result.directory, trials, MlflowClient(result.tracking.tracking_uri)


def independent_best(trials: list[dict]) -> dict:
    """study.best, restated: the highest final kNN top-1 of the trials that ran every epoch."""
    finished = [row for row in trials if row["status"] == "FINISHED"]
    assert finished, "the demo's ASHA lets at least one trial run every epoch"
    return max(finished, key=lambda row: row["final_knn_top1"])


def test_the_demo_ran_its_planned_trials_and_asha_stopped_some(demo):
    printed, _, trials, _ = demo
    assert int(line(ANNOUNCED, printed)["trials"]) == SEARCH_TRIALS == len(trials)
    statuses = [row["status"] for row in trials]
    assert set(statuses) <= set(MLFLOW_STATUS), statuses
    assert "STOPPED" in statuses and "FINISHED" in statuses, statuses
    most = max(row["epochs_run"] for row in trials)
    for row in trials:
        assert (row["status"] == "STOPPED") == (row["epochs_run"] < most), row


def test_the_summary_names_the_best_trial_and_both_baselines(demo):
    printed, _, trials, _ = demo
    best = independent_best(trials)
    named = line(BEST, printed)
    assert named["trial"] == best["trial_id"]
    assert float(named["score"]) == pytest.approx(best["final_knn_top1"], abs=5e-5)
    line(BASELINES, printed)


def test_mlflow_holds_the_sweep_its_trials_the_best_trial_and_the_counts(demo):
    _, directory, trials, client = demo
    experiment = client.get_experiment_by_name(
        directory.name
    )  # a sweep's experiment is named after it
    assert experiment.tags.get(EXPERIMENT_KIND_TAG) == EXPERIMENT_KIND
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [run for run in runs if run.data.tags.get(ROLE_TAG) == "sweep"]
    children = {
        run.data.tags[TRIAL_TAG]: run for run in runs if run.data.tags.get(ROLE_TAG) == "trial"
    }
    assert parent.info.status == "FINISHED"
    assert set(children) == {row["trial_id"] for row in trials}
    for row in trials:
        child = children[row["trial_id"]]
        assert child.info.status == MLFLOW_STATUS[row["status"]], row["trial_id"]
        assert (child.data.tags.get(STOPPED_BY_TAG) == "asha") == (row["status"] == "STOPPED")
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert parent.data.tags[BEST_TRIAL_TAG] == independent_best(trials)["trial_id"]
    statuses = [row["status"] for row in trials]
    assert parent.data.metrics["trials"] == len(trials)
    assert parent.data.metrics["trials_stopped"] == statuses.count("STOPPED")
    assert parent.data.metrics["trials_finished"] == statuses.count("FINISHED")


def test_the_report_is_written_and_logged_to_the_parent_run(demo):
    printed, directory, _, client = demo
    html = line(REPORT, printed)["path"]
    figures = line(FIGURES, printed)
    names = figures["names"].split(", ")
    assert Path(html).parent == Path(figures["directory"]) == directory / REPORT_DIR
    assert names and all((directory / REPORT_DIR / f"{name}.png").is_file() for name in names)
    assert Path(html).read_text().count("<figure") == len(names), "one figure per drawn PNG"
    (parent,) = client.search_runs(
        [client.get_experiment_by_name(directory.name).experiment_id],
        filter_string=f"tags.`{ROLE_TAG}` = 'sweep'",
    )
    logged = {each.path for each in client.list_artifacts(parent.info.run_id, REPORT_DIR)}
    assert {f"{REPORT_DIR}/{name}.png" for name in names} <= logged
    assert f"{REPORT_DIR}/{Path(html).name}" in logged


def test_the_optuna_study_prunes_what_asha_stopped_and_completes_the_rest(demo):
    _, directory, trials, _ = demo
    study = optuna.load_study(
        study_name=directory.name, storage=f"sqlite:///{directory / OPTUNA_FILE}"
    )
    assert len(study.trials) == len(trials)
    assert_optuna_mirrors_the_trials(study, trials)
