"""optuna-dashboard, as the README runs it, opens a sweep's ``optuna.db``.

The db is written the way a sweep writes it, without Ray: the sweep's own :class:`StudySearch`
(built as :func:`study.tuner.build_tuner` builds it, on the overlap space's plan) is driven
through Tune's Searcher calls, with trials that finish, are stopped by ASHA and diverge. The real
``optuna-dashboard`` console script then serves that db on 127.0.0.1 and is read through its
JSON API.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest

from study.config import METRIC, MODE, StudyConfig, plan
from study.layout import optuna_storage, sweep_directory
from study.search import StudySearch
from study.vocabulary import EPOCH, OPTUNA_FILE
from tests.s3 import free_port
from trainables.health import STOP_REASON_KEY

pytestmark = pytest.mark.ray

DASHBOARD = Path(sys.executable).with_name("optuna-dashboard")
STARTUP_TIMEOUT_S = 60.0
NAME = "overlap-dashboard"
OVERLAP = "views.params.overlap"
EPOCHS = 4
DIVERGED = "diverged: loss is nan at epoch 3"
# Per Tune trial: its knn_top1 per epoch, and how it ends ("finished", ASHA-"stopped" after its
# last reported epoch, or "diverged" at the epoch after, when its loss is nan).
TRIALS = {
    "a": ([0.30, 0.42, 0.51, 0.58], "finished"),
    "b": ([0.20, 0.25], "stopped"),
    "c": ([0.35, 0.45, 0.55, 0.61], "finished"),
    "d": ([0.10, 0.12], "diverged"),
}
STATES = {"finished": "Complete", "stopped": "Pruned", "diverged": "Fail"}


@dataclass(frozen=True)
class Sweep:
    cwd: Path  # where `study run --storage runs` ran: the README's relative URL resolves here
    name: str
    params: dict[str, dict[str, Any]]  # per Tune trial, the configuration StudySearch suggested


def result(epoch: int, score: float, **extra: Any) -> dict[str, Any]:
    return {METRIC: score, EPOCH: epoch, "training_iteration": epoch, **extra}


def drive(search: StudySearch, trial_id: str, scores: list[float], ending: str) -> None:
    """The Searcher calls Tune makes for one trial, in order."""
    for epoch, score in enumerate(scores, start=1):
        search.on_trial_result(trial_id, result(epoch, score))
    last = result(len(scores), scores[-1])
    if ending == "diverged":
        last = result(len(scores) + 1, math.nan, **{STOP_REASON_KEY: DIVERGED})
        search.on_trial_result(trial_id, last)
    search.on_trial_complete(trial_id, last)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Sweep:
    cwd = tmp_path_factory.mktemp("dashboard-sweep")
    config = StudyConfig(space="overlap", name=NAME, epochs=EPOCHS, storage=str(cwd / "runs"))
    study_plan = plan(config)
    directory = sweep_directory(config.storage, study_plan.name)
    directory.mkdir(parents=True)
    search = StudySearch(  # as study.tuner.build_tuner builds it
        study_plan.define,
        max_epochs=study_plan.epochs,
        metric=METRIC,
        mode=MODE,
        study_name=study_plan.name,
        storage=optuna_storage(directory),
        seed=config.seed,
        points=study_plan.points,
    )
    params = {trial_id: search.suggest(trial_id) for trial_id in TRIALS}  # all four run at once
    for trial_id, (scores, ending) in TRIALS.items():
        drive(search, trial_id, scores, ending)
    assert (directory / OPTUNA_FILE).is_file()
    return Sweep(cwd, study_plan.name, params)


@contextmanager
def dashboard(storage_url: str, cwd: Path) -> Iterator[str]:
    """The ``optuna-dashboard`` console script serving ``storage_url`` on a free port of
    127.0.0.1, run from ``cwd``; yields its base URL once it answers HTTP. Stopped, with its
    whole process group (gunicorn forks workers), on the way out."""
    port = free_port()
    log = cwd / f"optuna-dashboard-{port}.log"
    # gunicorn (which optuna-dashboard picks when it is installed) opens a control socket at
    # $XDG_RUNTIME_DIR/gunicorn.ctl, else ~/.gunicorn/gunicorn.ctl: keep it in the test's folder.
    runtime = cwd / f"run-{port}"
    runtime.mkdir()
    with log.open("wb") as output:
        server = subprocess.Popen(
            [str(DASHBOARD), storage_url, "--host", "127.0.0.1", "--port", str(port)],
            cwd=cwd,
            env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if server.poll() is not None:
                raise AssertionError(
                    f"optuna-dashboard exited with {server.returncode} before answering:\n"
                    + log.read_text(errors="replace")
                )
            try:
                with urllib.request.urlopen(f"{base}/api/meta", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"optuna-dashboard did not answer on {base} in {STARTUP_TIMEOUT_S:g} s:\n"
                    + log.read_text(errors="replace")
                )
            time.sleep(0.1)
        yield base
    finally:
        stop(server)


def stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
    try:  # workers the server left behind in its group
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def get(base: str, path: str) -> Any:
    with urllib.request.urlopen(f"{base}{path}", timeout=10) as response:
        assert response.status == 200, (path, response.status)
        return json.load(response)


def studies(base: str) -> dict[str, dict[str, Any]]:
    return {study["study_name"]: study for study in get(base, "/api/studies")["study_summaries"]}


def test_the_dashboard_shows_a_sweeps_trials_params_and_values(sweep):
    readme_url = f"sqlite:///runs/{sweep.name}/{OPTUNA_FILE}"  # README: optuna-dashboard <this>
    with dashboard(readme_url, sweep.cwd) as base:
        listed = studies(base)
        assert list(listed) == [sweep.name]
        assert listed[sweep.name]["directions"] == ["maximize"]
        detail = get(base, f"/api/studies/{listed[sweep.name]['study_id']}")

    assert detail["name"] == sweep.name
    trials = detail["trials"]
    assert [trial["number"] for trial in trials] == list(range(len(TRIALS)))
    assert [trial["state"] for trial in trials] == [STATES[end] for _, end in TRIALS.values()]
    assert [space["name"] for space in detail["union_search_space"]] == [OVERLAP]
    for trial, (trial_id, (scores, ending)) in zip(trials, TRIALS.items(), strict=True):
        (param,) = trial["params"]
        assert param["name"] == OVERLAP
        assert float(param["param_external_value"]) == sweep.params[trial_id][OVERLAP]
        assert param["distribution"]["type"] == "FloatDistribution"
        assert (param["distribution"]["low"], param["distribution"]["high"]) == (0.1, 0.9)
        assert trial["intermediate_values"] == [
            {"step": epoch, "value": score} for epoch, score in enumerate(scores, start=1)
        ]
        attrs = {attr["key"]: attr["value"] for attr in trial["user_attrs"]}
        if ending == "diverged":
            assert "values" not in trial
        else:  # Optuna gives a pruned trial its last intermediate value
            assert trial["values"] == [scores[-1]]
        if ending == "stopped":
            assert attrs == {"stopped_at_epoch": str(len(scores))}
        if ending == "diverged":
            assert attrs == {STOP_REASON_KEY: DIVERGED}
    (best,) = detail["best_trials"]
    assert best["number"] == 2 and best["values"] == [0.61]
    assert detail["has_intermediate_values"] is True


def test_the_dashboard_on_another_db_does_not_show_the_sweep(sweep, tmp_path):
    other = tmp_path / "runs" / "other"
    other.mkdir(parents=True)
    optuna.create_study(study_name="other", storage=optuna_storage(other), direction="maximize")
    with dashboard(optuna_storage(other), tmp_path) as base:
        listed = studies(base)
    assert sweep.name not in listed
    assert list(listed) == ["other"]
