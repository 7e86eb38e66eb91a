"""The ``study`` command end to end, in process (``study_cli.commands.main``), for what the README
promises of it: ``study report --source mlflow`` on the shared search sweep, and ``study run
--seeds`` and ``--overwrite`` on a real tiny sweep (on the session's Ray, see tests/conftest.py).
Tracking credentials are tested in tests/study/test_cli.py, which needs no Ray."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray
from mlflow.tracking import MlflowClient

from study.vocabulary import REPLACED_DIR, ROLE_TAG, STOPPED_BY_TAG, TRIAL_TAG
from study_cli.commands import main
from tests.real_sweeps import QUICK
from tests.study.test_sweep import STATUS_OF_RUN, moved_aside

# The tiny grid `study run` runs twice: one overlap, one epoch, QUICK's few images; the second
# run replaces the first (--overwrite) with other seeds.
SWEEP = "seeded"
OVERLAP = 0.3
EPOCHS = 1
FIRST_SEEDS = (0, 1)
SECOND_SEEDS = (2,)
SET_ASIDE = re.compile(rf"^{SWEEP}-\d{{8}}-\d{{6}}$")
"""The name of an overwritten sweep's folder under ``<storage>/.replaced/``."""


def trial_runs(client: MlflowClient, experiment_id: str, parent_run_id: str) -> dict[str, dict]:
    """The child runs of one parent, from MLflow: run id -> status, params and knn_top1 history."""
    return {
        run.info.run_id: {
            "trial_id": run.data.tags[TRIAL_TAG],
            "status": STATUS_OF_RUN[(run.info.status, run.data.tags.get(STOPPED_BY_TAG))],
            "params": run.data.params,
            "history": sorted(
                (point.step, point.value)
                for point in client.get_metric_history(run.info.run_id, "knn_top1")
            ),
        }
        for run in client.search_runs([experiment_id])
        if run.data.tags.get(ROLE_TAG) == "trial"
        and run.data.tags.get("mlflow.parentRunId") == parent_run_id
    }


def digests(directory: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``directory``."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


class Collected(logging.Handler):
    """Keeps the messages of the records it is handed."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def overwritten(local_ray, tmp_path_factory):
    """``study run --grid --seeds 0 1`` of one overlap, then the same name again with
    ``--overwrite --seeds 2``, on the session's Ray. What the first left is read between the
    runs."""
    root = tmp_path_factory.mktemp("overwrite")
    storage, tracking_uri = root / "runs", f"sqlite:///{root / 'mlflow.db'}"
    directory = storage / SWEEP

    def run(seeds, *extra):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = main(
                [
                    "run",
                    "--space",
                    "overlap",
                    "--grid",
                    "--grid-only",
                    f"views.params.overlap=[{OVERLAP}]",
                    "--seeds",
                    *map(str, seeds),
                    "--epochs",
                    str(EPOCHS),
                    "--max-concurrent-trials",
                    str(len(FIRST_SEEDS)),
                    *(f"--set={key}={value}" for key, value in QUICK.items()),
                    "--name",
                    SWEEP,
                    "--storage",
                    str(storage),
                    "--tracking-uri",
                    tracking_uri,
                    *extra,
                ]
            )
        assert code == 0, printed.getvalue()
        return printed.getvalue()

    handler = Collected(logging.WARNING)
    logging.getLogger("study.prepare").addHandler(handler)
    assert ray.is_initialized(), "the sweeps run on the session's Ray (tests/conftest.py)"
    try:
        first_printed = run(FIRST_SEEDS)
        first = {
            "state": json.loads((directory / "study.json").read_text()),
            "trials": pq.read_table(directory / "results" / "trials.parquet").to_pylist(),
            "files": digests(directory),
        }
        client = MlflowClient(tracking_uri)
        first["parent_run_id"] = first["state"]["tracking"]["parent_run_id"]
        first["experiment_id"] = first["state"]["tracking"]["experiment_id"]
        first["runs"] = trial_runs(client, first["experiment_id"], first["parent_run_id"])
        second_printed = run(SECOND_SEEDS, "--overwrite")
    finally:
        logging.getLogger("study.prepare").removeHandler(handler)
    return {
        "storage": storage,
        "directory": directory,
        "client": MlflowClient(tracking_uri),
        "first": first,
        "printed": (first_printed, second_printed),
        "warnings": handler.messages,
    }


@pytest.mark.ray
def test_seeds_run_every_seed_of_the_grid_point_once(overwritten):
    """``--seeds 0 1`` on a one-point grid: two trials, one per seed, each to the last epoch,
    in the tables and in MLflow, and the untrained encoder scored once per seed."""
    first = overwritten["first"]
    assert (
        f"sweep {SWEEP}: grid over overlap, {len(FIRST_SEEDS)} trials x {EPOCHS} epochs"
        in (overwritten["printed"][0])
    )
    rows = first["trials"]
    assert sorted(row["param.seed"] for row in rows) == list(FIRST_SEEDS)
    assert {
        (row["param.views.params.overlap"], row["status"], row["epochs_run"]) for row in rows
    } == {(OVERLAP, "FINISHED", EPOCHS)}
    runs = first["runs"].values()
    assert sorted(int(run["params"]["seed"]) for run in runs) == list(FIRST_SEEDS)
    assert {float(run["params"]["views.params.overlap"]) for run in runs} == {OVERLAP}
    assert all(run["status"] == "FINISHED" and len(run["history"]) == EPOCHS for run in runs)
    untrained = overwritten["client"].get_metric_history(
        first["parent_run_id"], "untrained_knn_top1"
    )
    assert sorted(point.step for point in untrained) == list(FIRST_SEEDS), "step = seed"


@pytest.mark.ray
def test_overwrite_sets_the_old_sweep_aside_and_runs_the_new_one(overwritten):
    """``--overwrite``: the old folder is moved, unchanged, under ``runs/.replaced/`` (a warning
    names it), its MLflow runs are kept as they were, and the new sweep (new parent run, the
    new seeds) is written in its place."""
    first, directory, client = (
        overwritten["first"],
        overwritten["directory"],
        overwritten["client"],
    )
    replaced = overwritten["storage"] / REPLACED_DIR
    kept_sweeps = list(replaced.iterdir()) if replaced.is_dir() else []
    assert len(kept_sweeps) == 1, f"the old sweep is kept under {replaced}: {kept_sweeps}"
    (kept,) = kept_sweeps
    assert SET_ASIDE.match(kept.name), kept.name
    assert digests(kept) == first["files"], "every file of the old sweep, unchanged"
    assert any(str(kept) in warning and SWEEP in warning for warning in overwritten["warnings"])

    state = json.loads((directory / "study.json").read_text())
    assert state["state"] == "finished"
    assert state["tracking"]["parent_run_id"] != first["parent_run_id"]
    assert state["config"]["seeds"] == list(SECOND_SEEDS)
    rows = pq.read_table(directory / "results" / "trials.parquet").to_pylist()
    assert [(row["param.seed"], row["status"]) for row in rows] == [
        (seed, "FINISHED") for seed in SECOND_SEEDS
    ]

    assert trial_runs(client, first["experiment_id"], first["parent_run_id"]) == first["runs"], (
        "the old sweep's runs and their histories are kept"
    )
    assert client.get_run(first["parent_run_id"]).info.status == "FINISHED"
    new_runs = trial_runs(
        client, state["tracking"]["experiment_id"], state["tracking"]["parent_run_id"]
    )
    assert sorted(int(run["params"]["seed"]) for run in new_runs.values()) == list(SECOND_SEEDS)
    assert {row["mlflow_run_id"] for row in rows} == set(new_runs)


@pytest.mark.ray
def test_report_from_the_mlflow_runs(search_sweep, capsys, tmp_path):
    """``study report NAME --source mlflow`` reads the sweep's runs, not its Parquet tables (they
    are moved away meanwhile, so the Parquet source would refuse): the page says so, and its
    trials table has each child run with the outcome and epochs MLflow holds."""
    result = search_sweep
    client = MlflowClient(result.tracking.tracking_uri)
    runs = trial_runs(client, result.tracking.experiment_id, result.tracking.parent_run_id)
    expected = sorted(
        (run["trial_id"], run["status"], str(len(run["history"]))) for run in runs.values()
    )
    assert {status for _, status, _ in expected} >= {"FINISHED", "STOPPED"}
    storage = str(result.directory.parent)
    with moved_aside(result.trials_path, result.epochs_path):
        code = main(["report", result.name, "--source", "mlflow", "--storage", storage])
        assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    page_path = Path(re.search(r"^report: (\S+)$", printed, re.MULTILINE).group(1))
    assert page_path == result.directory / "report" / "report.html"
    figures = re.search(r"^figures: (.+) \(PNG in ", printed, re.MULTILINE).group(1).split(", ")
    assert {"fig2a_overlap", "learning_curves"} <= set(figures)
    page = page_path.read_text()
    counts = {status: [s for _, s, _ in expected].count(status) for _, status, _ in expected}
    assert f"{len(expected)} trials (" in page and "; data from mlflow;" in page
    for status, count in counts.items():
        assert f"{count} {status.lower()}" in page
    body = page[page.index("<h2>Trials</h2>") :]
    rows = [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr><td>.*?</tr>", body)]
    assert sorted(tuple(cells[:3]) for cells in rows) == expected
    logged = client.download_artifacts(
        result.tracking.parent_run_id, "report/report.html", str(tmp_path)
    )
    assert Path(logged).read_text() == page, "the page is logged to the parent run"
