"""A real sweep: local Ray cluster, Ray Train trials, Optuna + ASHA, a real MLflow sqlite store."""

import contextlib
import json

import optuna
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from study.vocabulary import ROLE_TAG, STOPPED_BY_TAG, TRIAL_TAG
from tests.real_sweeps import SEARCH_DATASET
from tests.real_sweeps import SEARCH_EPOCHS as EPOCHS
from tests.real_sweeps import SEARCH_TRIALS as TRIALS
from tests.sweep_checks import assert_optuna_mirrors_the_trials

pytestmark = pytest.mark.ray

# A child run's MLflow status and `study.stopped_by` tag -> the trial's status in the tables, as
# the README states them (written out here, not read from study.vocabulary).
STATUS_OF_RUN = {
    ("FINISHED", None): "FINISHED",
    ("KILLED", "asha"): "STOPPED",
    ("FAILED", None): "FAILED",
}
SEARCH_TAG_PREFIX = "search."
"""A child run's tags of the values the searcher chose (``search.views.params.overlap``)."""
# What `study export` must rebuild, compared column by column with the MLflow runs.
EXPORTED_COLUMNS = (
    "trial_id",
    "status",
    "epochs_run",
    "mlflow_run_id",
    "final_knn_top1",
    "best_knn_top1",
    "param.views.params.overlap",
)


@pytest.fixture(scope="module")
def sweep(search_sweep):
    return (
        search_sweep,
        MlflowClient(search_sweep.tracking.tracking_uri),
        search_sweep.directory.parent.parent,
    )


def children(client, result):
    return [
        run
        for run in client.search_runs([result.tracking.experiment_id])
        if run.data.tags.get(ROLE_TAG) == "trial"
    ]


def trials_from_mlflow(client, experiment_id):
    """The trials as the sweep's child runs in MLflow record them, built here without the
    study's code: trial id -> the row ``trials.parquet`` must have (status, epochs run, run id,
    final and best knn_top1, the searched overlap) and the (epoch, knn_top1) history."""
    trials = {}
    for run in client.search_runs([experiment_id]):
        if run.data.tags.get(ROLE_TAG) != "trial":
            continue
        history = sorted(
            (point.step, point.value)
            for point in client.get_metric_history(run.info.run_id, "knn_top1")
        )
        scores = [value for _, value in history]
        trials[run.data.tags[TRIAL_TAG]] = {
            "row": {
                "trial_id": run.data.tags[TRIAL_TAG],
                "status": STATUS_OF_RUN[(run.info.status, run.data.tags.get(STOPPED_BY_TAG))],
                "epochs_run": len(history),
                "mlflow_run_id": run.info.run_id,
                "final_knn_top1": pytest.approx(scores[-1]),
                "best_knn_top1": pytest.approx(max(scores)),
                "param.views.params.overlap": pytest.approx(
                    float(run.data.params["views.params.overlap"])
                ),
            },
            "history": [(step, pytest.approx(value)) for step, value in history],
        }
    return trials


def assert_tables_match_mlflow(trials_path, epochs_path, expected):
    """``trials.parquet`` has one row per child run with its values; ``epochs.parquet`` one row
    per logged epoch, in the run's knn_top1 history."""
    assert trials_path.is_file() and epochs_path.is_file(), "the export wrote both tables"
    trials = pq.read_table(trials_path)
    assert set(EXPORTED_COLUMNS) <= set(trials.column_names)
    assert trials.num_rows == len(expected)
    rows = {row["trial_id"]: row for row in trials.select(list(EXPORTED_COLUMNS)).to_pylist()}
    assert rows == {trial_id: trial["row"] for trial_id, trial in expected.items()}
    epochs = pq.read_table(epochs_path).to_pylist()
    assert len(epochs) == sum(len(trial["history"]) for trial in expected.values())
    for trial_id, trial in expected.items():
        exported = sorted(
            (row["epoch"], row["knn_top1"]) for row in epochs if row["trial_id"] == trial_id
        )
        assert exported == trial["history"], trial_id


@contextlib.contextmanager
def moved_aside(*paths):
    """``paths`` renamed away while the block runs (so that what is read there was written
    there); put back afterwards wherever the block did not write them again."""
    aside = {path: path.with_name(path.name + ".aside") for path in paths}
    for path, away in aside.items():
        path.rename(away)
    try:
        yield
    finally:
        for path, away in aside.items():
            if path.exists():
                away.unlink()
            else:
                away.rename(path)


def test_asha_stopped_at_least_one_trial_early(sweep):
    result, _, _ = sweep
    statuses = result.trials["status"].to_pylist()
    assert len(statuses) == TRIALS
    assert "STOPPED" in statuses and "FINISHED" in statuses
    for status, epochs in zip(statuses, result.trials["epochs_run"].to_pylist()):
        assert (epochs < EPOCHS) == (status == "STOPPED")


def test_mlflow_has_one_parent_and_one_child_per_trial(sweep):
    result, client, _ = sweep
    runs = client.search_runs([result.tracking.experiment_id])
    parents = [run for run in runs if run.data.tags.get(ROLE_TAG) == "sweep"]
    assert [run.info.run_id for run in parents] == [result.tracking.parent_run_id]
    kids = children(client, result)
    assert len(kids) == TRIALS
    assert {run.data.tags["mlflow.parentRunId"] for run in kids} == {result.tracking.parent_run_id}
    assert {run.data.tags[TRIAL_TAG] for run in kids} == set(result.trials["trial_id"].to_pylist())


def test_children_record_params_history_and_artifacts(sweep):
    result, client, _ = sweep
    epochs_by_trial = dict(
        zip(result.trials["trial_id"].to_pylist(), result.trials["epochs_run"].to_pylist())
    )
    for run in children(client, result):
        params = run.data.params
        assert (
            params["views.family"] == "overlap"
            and 0.1 <= float(params["views.params.overlap"]) <= 0.9
        )
        assert params["model.backbone"] == "small" and params["epochs"] == str(EPOCHS)
        history = client.get_metric_history(run.info.run_id, "knn_top1")
        assert sorted(m.step for m in history) == list(
            range(1, epochs_by_trial[run.data.tags[TRIAL_TAG]] + 1)
        )
        for key in (
            "loss",
            "knn_top5",
            "z_std",
            "floor_active",
            "images_per_s",
            "overlap_mean",
            "distance_mean",
            "phi_mean",
        ):
            assert key in run.data.metrics, key
        assert float(run.data.metrics["overlap_mean"]) == pytest.approx(
            float(params["views.params.overlap"]), abs=1e-4
        )
        artifacts = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "view_pairs.png"} <= artifacts
        if run.info.status == "FINISHED":
            assert "backbone.pt" in artifacts


def test_terminal_statuses_and_nothing_left_running(sweep):
    result, client, _ = sweep
    status_by_trial = dict(
        zip(result.trials["trial_id"].to_pylist(), result.trials["status"].to_pylist())
    )
    for run in children(client, result):
        expected = {"FINISHED": "FINISHED", "STOPPED": "KILLED", "FAILED": "FAILED"}[
            status_by_trial[run.data.tags[TRIAL_TAG]]
        ]
        assert run.info.status == expected
        assert (run.data.tags.get(STOPPED_BY_TAG) == "asha") == (expected == "KILLED")
    statuses = {run.info.status for run in client.search_runs([result.tracking.experiment_id])}
    assert "RUNNING" not in statuses
    assert client.get_run(result.tracking.parent_run_id).info.status == "FINISHED"


def test_stopped_trials_are_pruned_in_the_optuna_study(sweep):
    result, _, _ = sweep
    study = optuna.load_study(
        study_name=result.name, storage=f"sqlite:///{result.directory / 'optuna.db'}"
    )
    assert_optuna_mirrors_the_trials(study, result.trials.to_pylist())


def test_parquet_reads_back_and_matches_the_runs(sweep):
    result, client, _ = sweep
    trials = pq.read_table(result.trials_path)
    epochs = pq.read_table(result.epochs_path)
    assert trials.num_rows == TRIALS
    assert epochs.num_rows == sum(trials["epochs_run"].to_pylist())
    for row in trials.to_pylist():
        run = client.get_run(row["mlflow_run_id"])
        assert run.data.tags[TRIAL_TAG] == row["trial_id"]
        history = sorted(
            client.get_metric_history(row["mlflow_run_id"], "knn_top1"), key=lambda m: m.step
        )
        rows = [r for r in epochs.to_pylist() if r["trial_id"] == row["trial_id"]]
        assert [r["knn_top1"] for r in sorted(rows, key=lambda r: r["epoch"])] == pytest.approx(
            [m.value for m in history]
        )
        assert row["final_knn_top1"] == pytest.approx(history[-1].value)
        assert json.loads(row["config_json"])["views"]["params"]["overlap"] == pytest.approx(
            row["param.views.params.overlap"]
        )
    logged = {
        artifact.path
        for artifact in client.list_artifacts(result.tracking.parent_run_id, "results")
    }
    assert {"results/trials.parquet", "results/epochs.parquet", "results/summary.txt"} <= logged
    parent = client.get_run(result.tracking.parent_run_id)
    assert parent.data.metrics["trials"] == TRIALS
    finished = [row for row in trials.to_pylist() if row["status"] == "FINISHED"]
    assert finished, "the fixture's sweep has trials that ran every epoch"
    assert parent.data.metrics["best_knn_top1"] == pytest.approx(
        max(row["final_knn_top1"] for row in finished)
    )


def test_the_cli_the_tags_the_table_and_the_record_name_one_best_trial(sweep, capsys):
    """One rule (study.best): the highest final knn_top1 among the trials that ran every epoch."""
    from study.best import FINISHED_RULE
    from study.state import read_state
    from study_cli.commands import print_result

    result, client, _ = sweep
    rows = pq.read_table(result.trials_path).to_pylist()
    finished = [row for row in rows if row["status"] == "FINISHED"]
    expected = max(finished, key=lambda row: row["final_knn_top1"])
    parent = client.get_run(result.tracking.parent_run_id)
    assert result.best.trial_id == expected["trial_id"] and result.best.knn_top1 == pytest.approx(
        expected["final_knn_top1"]
    )
    assert parent.data.tags["study.best_trial"] == expected["trial_id"]
    assert parent.data.tags["study.best_rule"] == FINISHED_RULE
    assert [row["trial_id"] for row in rows if row["best"]] == [expected["trial_id"]]
    assert read_state(result.directory).best == result.best
    print_result(result)
    assert f"trial {expected['trial_id']} ({FINISHED_RULE})" in capsys.readouterr().out


def test_ls_and_export_from_the_cli(sweep, capsys):
    """``study ls`` lists the sweep finished with the parent run's best score; ``study export``
    rebuilds both tables from Tune's experiment state (the old ones are moved away first) with
    the values the MLflow runs hold."""
    from study_cli.commands import main

    result, client, _ = sweep
    storage = str(result.directory.parent)
    parent = client.get_run(result.tracking.parent_run_id)
    assert main(["ls", "--storage", storage]) == 0
    line = next(
        line for line in capsys.readouterr().out.splitlines() if line.startswith(result.name)
    )
    assert "finished" in line and f"{parent.data.metrics['best_knn_top1']:.4f}" in line
    expected = trials_from_mlflow(client, result.tracking.experiment_id)
    assert len(expected) == TRIALS
    with moved_aside(result.trials_path, result.epochs_path):
        assert main(["export", result.name, "--storage", storage]) == 0
        printed = capsys.readouterr().out.splitlines()
        assert printed == [str(result.trials_path), str(result.epochs_path)]
        assert_tables_match_mlflow(result.trials_path, result.epochs_path, expected)


def test_the_parent_run_counts_the_outcomes_and_names_the_best_child(sweep):
    """The parent run's ``trials_*`` metrics count the child runs by outcome, and its
    ``study.best_*`` tags name the FINISHED child with the highest final knn_top1 in MLflow,
    with that child's searched values."""
    from study.best import FINISHED_RULE

    result, client, _ = sweep
    parent = client.get_run(result.tracking.parent_run_id)
    kids = children(client, result)
    outcomes = [STATUS_OF_RUN[(run.info.status, run.data.tags.get(STOPPED_BY_TAG))] for run in kids]
    assert outcomes.count("STOPPED") >= 1 and outcomes.count("FINISHED") >= 1
    metrics = parent.data.metrics
    assert metrics["trials"] == len(kids)
    for outcome in ("FINISHED", "STOPPED", "FAILED"):
        assert metrics[f"trials_{outcome.lower()}"] == outcomes.count(outcome), outcome
    assert metrics["trials_diverged"] == metrics["trials_collapsed"] == 0

    def final_score(run):
        history = client.get_metric_history(run.info.run_id, "knn_top1")
        return max(history, key=lambda point: point.step).value

    finished = [run for run, outcome in zip(kids, outcomes) if outcome == "FINISHED"]
    best = max(finished, key=final_score)
    tags = parent.data.tags
    assert tags["study.best_trial"] == best.data.tags[TRIAL_TAG]
    assert tags["study.best_rule"] == FINISHED_RULE
    assert tags["study.state"] == "finished"
    assert metrics["best_knn_top1"] == pytest.approx(final_score(best))
    overrides = json.loads(tags["study.best_overrides"])
    searched = {
        key.removeprefix(SEARCH_TAG_PREFIX): value
        for key, value in best.data.tags.items()
        if key.startswith(SEARCH_TAG_PREFIX)
    }
    assert "views.params.overlap" in searched
    assert overrides == {
        key: pytest.approx(float(value)) if isinstance(overrides.get(key), float) else value
        for key, value in searched.items()
    }, "the values the searcher chose for the best child (its search.* tags)"


def test_a_used_name_is_refused_before_ray_starts(sweep, capsys, monkeypatch):
    """Refused by the checks made before Ray: the sweep is never started (the session's Ray is
    up for the shared sweeps, so "not initialised" cannot show it), no run is created and the
    sweep's folder is left as it was."""
    from study import lifecycle
    from study_cli.commands import main

    result, client, _ = sweep
    runs_before = len(client.search_runs([result.tracking.experiment_id]))
    files_before = sorted(result.directory.rglob("*"))

    def start_study(*args, **kwargs):
        raise AssertionError("the sweep was started: its name was not refused")

    monkeypatch.setattr(lifecycle, "start_study", start_study)
    code = main(
        [
            "run",
            "--space",
            "overlap",
            "--name",
            result.name,
            "--storage",
            str(result.directory.parent),
            "--tracking-uri",
            result.tracking.tracking_uri,
        ]
    )
    assert code == 2
    assert f"name='{result.name}'" in capsys.readouterr().err
    assert len(client.search_runs([result.tracking.experiment_id])) == runs_before
    assert sorted(result.directory.rglob("*")) == files_before


def test_the_baselines_are_on_the_parent_run_in_parquet_and_in_the_state(sweep):
    """The untrained encoder of the search's seed and the raw pixels: computed at the start, the
    same in Parquet, the state, the result and MLflow, and equal to the science functions."""
    from study.state import read_state
    from study.vocabulary import (
        BASELINES_FILE,
        PIXELS_METRIC,
        RESULTS_DIR,
        UNTRAINED_MEAN_METRIC,
        UNTRAINED_METRIC,
    )
    from trainables.baselines import PIXELS, UNTRAINED, Baselines, pixel_knn, untrained_knn
    from trainables.config import TrainConfig

    result, client, _ = sweep
    table = pq.read_table(result.directory / RESULTS_DIR / BASELINES_FILE)
    rows = table.to_pylist()
    assert [(row["baseline"], row["seed"]) for row in rows] == [(UNTRAINED, 0), (PIXELS, None)], (
        "one seed (the search's), pixels once"
    )
    assert {(row["eval_dataset"], row["k"], row["size"], row["eval_limit"]) for row in rows} == {
        (SEARCH_DATASET, 200, 16, 300)  # k: SimSiam's 200, below patterns' 600 a class
    }
    assert Baselines.from_rows(rows) == result.baselines
    assert list(read_state(result.directory).baselines) == rows
    parent = result.tracking.parent_run_id
    untrained = [
        (point.step, point.value) for point in client.get_metric_history(parent, UNTRAINED_METRIC)
    ]
    assert untrained == [(0, pytest.approx(rows[0]["knn_top1"]))], "step = seed"
    metrics = client.get_run(parent).data.metrics
    assert metrics[UNTRAINED_MEAN_METRIC] == pytest.approx(rows[0]["knn_top1"])
    assert metrics[PIXELS_METRIC] == pytest.approx(rows[1]["knn_top1"])
    assert "results/baselines.parquet" in {
        artifact.path for artifact in client.list_artifacts(parent, "results")
    }
    config = TrainConfig.from_dict(json.loads(result.trials["config_json"][0].as_py())).replace(
        seed=0
    )
    assert untrained_knn(config)["knn_top1"] == pytest.approx(rows[0]["knn_top1"])
    assert untrained_knn(config)["knn_top5"] == pytest.approx(rows[0]["knn_top5"])
    assert pixel_knn(config) == {
        "knn_top1": pytest.approx(rows[1]["knn_top1"]),
        "knn_top5": pytest.approx(rows[1]["knn_top5"]),
    }


def test_the_closing_lines_state_the_baselines_and_the_margins(sweep, capsys):
    from study_cli.commands import print_result

    result, _, _ = sweep
    print_result(result)
    out = capsys.readouterr().out
    (untrained,), pixels, best = (
        result.baselines.untrained.values(),
        result.baselines.pixels,
        result.best_knn_top1,
    )
    line = next(line for line in out.splitlines() if line.startswith("baselines: "))
    assert f"untrained encoder {untrained:.3f} (seed 0: {untrained:.3f})" in line
    assert f"raw pixels {pixels:.3f}" in line
    assert (
        f"best {best:.3f} = untrained {best - untrained:+.3f} "
        f"(seed 0; mean {best - untrained:+.3f}), pixels {best - pixels:+.3f}" in line
    )
    assert out.index(f"best knn_top1={best:.4f}") < out.index(line), "after the best configuration"
