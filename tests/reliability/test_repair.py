"""Runs left RUNNING by a hard kill of the sweep driver are closed by ``study ls --repair``; a
sweep whose driver is alive is left alone. Real MLflow store, real (dead and live) processes."""

import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from study.layout import sweep_directory
from study.state import read_state, write_state
from study.tracking import start_sweep
from study_cli.commands import main
from tests.sweep_states import Driver, Lifecycle, sweep_state


def stale_sweep(tmp_path, name, pid):
    """A sweep as a killed driver leaves it: state running, parent and two children RUNNING."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking = start_sweep(uri, name, name, {"space": "overlap"})
    children = [tracking.trial_run(f"t{index}", f"trial_{index}") for index in range(2)]
    MlflowClient(uri).set_terminated(children[0])  # one trial had finished
    directory = sweep_directory(tmp_path / "runs", name)
    directory.mkdir(parents=True)
    write_state(
        directory,
        sweep_state(
            name,
            uri,
            tracking.experiment_id,
            tracking.parent_run_id,
            lifecycle=Lifecycle.RUNNING,
            driver=Driver(os.uname().nodename, pid),
        ),
    )
    return tracking, children, directory


@pytest.fixture
def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_repair_closes_the_runs_of_a_dead_driver(tmp_path, dead_pid, capsys):
    tracking, (finished, unfinished), directory = stale_sweep(tmp_path, "killed", dead_pid)
    client = MlflowClient(tracking.tracking_uri)
    assert main(["ls", "--storage", str(tmp_path / "runs")]) == 0
    assert client.get_run(unfinished).info.status == "RUNNING", "plain ls repairs nothing"
    assert main(["ls", "--repair", "--storage", str(tmp_path / "runs")]) == 0
    assert "closed 2 runs left RUNNING" in capsys.readouterr().out
    assert client.get_run(unfinished).info.status == "KILLED"
    assert client.get_run(finished).info.status == "FINISHED", "a finished run keeps its status"
    assert client.get_run(tracking.parent_run_id).info.status == "KILLED"
    assert read_state(directory).lifecycle == "interrupted"
    assert main(["ls", "--repair", "--storage", str(tmp_path / "runs")]) == 0
    assert "closed" not in capsys.readouterr().out, "a second repair has nothing to do"


def test_a_live_driver_is_left_alone(tmp_path):
    tracking, (_, unfinished), directory = stale_sweep(tmp_path, "alive", os.getpid())
    assert main(["ls", "--repair", "--storage", str(tmp_path / "runs")]) == 0
    assert MlflowClient(tracking.tracking_uri).get_run(unfinished).info.status == "RUNNING"
    assert read_state(directory).lifecycle == "running"
