"""Ctrl-C (SIGINT to the terminal's process group) and SIGTERM (what SLURM and Kubernetes send the
driver on pre-emption) after a sweep's first epoch: real processes, a real local Ray cluster, a
real MLflow store. The sweep says it was interrupted (``study ls``, its record, the parent run),
the cut trials are KILLED with ``study.stopped_by=interrupt``, the last line says how to resume,
and ``study resume`` completes the sweep with each epoch logged once."""

import os
import signal
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from study.interrupt import EXIT_CODES
from study.state import read_state
from study.vocabulary import (
    EPOCHS_FILE,
    INTERRUPT_STOPPER,
    RESULTS_DIR,
    STATE_TAG,
    STOPPED_BY_TAG,
    TRIAL_TAG,
    TRIALS_FILE,
)
from tests.reliability.test_driver_killed import ray_processes, steps, trial_runs, wait_for

pytestmark = pytest.mark.ray

EPOCHS = 4  # the signal comes after epoch 1, leaving the trials 3 epochs to be cut in
TRIALS = 2
TIMEOUT_S = 300


def study(*arguments: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "study_cli", *arguments],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        **options,
    )


@pytest.fixture(scope="module", params=["SIGINT", "SIGTERM"])
def interrupted(request, tmp_path_factory):
    signal_name = request.param
    root = tmp_path_factory.mktemp(f"interrupted-{signal_name.lower()}")
    name, storage, uri = f"cut-{signal_name.lower()}", str(root / "runs"), f"sqlite:///{root}/m.db"
    console = root / "console.txt"
    with console.open("w") as output:
        driver = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "study_cli",
                "run",
                "--space",
                "cutout",
                "--dataset",
                "digits",
                "--num-samples",
                str(TRIALS),
                "--epochs",
                str(EPOCHS),
                "--grace-period",
                str(EPOCHS),
                "--max-concurrent-trials",
                str(TRIALS),
                "--name",
                name,
                "--storage",
                storage,
                "--tracking-uri",
                uri,
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    client = MlflowClient(uri)

    def a_trial_past_its_first_epoch():
        if not (root / "m.db").exists():
            return False
        return any(
            1 <= len(steps(client, run.info.run_id)) < EPOCHS
            for run in trial_runs(client)
            if run.info.status == "RUNNING"
        )

    try:
        wait_for(a_trial_past_its_first_epoch, "a trial past its first epoch", timeout=TIMEOUT_S)
        number = signal.Signals[signal_name]
        if number is signal.SIGINT:
            os.killpg(driver.pid, number)  # what Ctrl-C in a terminal does
        else:
            os.kill(driver.pid, number)
        returncode = driver.wait(timeout=TIMEOUT_S)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    wait_for(lambda: not ray_processes(), "the driver's Ray to go", timeout=60)
    after = {
        "returncode": returncode,
        "console": console.read_text(),
        "listing": study("ls", "--storage", storage).stdout,
        "state": read_state(root / "runs" / name),
        "parent": client.get_run(read_state(root / "runs" / name).parent_run_id),
        "trials": {run.info.run_id: run for run in trial_runs(client)},
    }
    return signal_name, name, storage, root, client, after


def test_the_driver_exits_with_the_signals_status_and_says_how_to_resume(interrupted):
    signal_name, name, storage, _, _, after = interrupted
    assert after["returncode"] == EXIT_CODES[signal_name], after["console"][-3000:]
    lines = after["console"].rstrip().splitlines()
    assert lines[-1] == f"resume with: study resume {name} --storage {storage}"
    assert f"sweep {name} interrupted by {signal_name}: " in lines[-2]
    ended = sum(run.info.status != "KILLED" for run in after["trials"].values())
    assert f": {ended} of {TRIALS} trials had ended; " in lines[-2], lines[-2]
    assert "Tuner.restore" not in after["console"], "Tune's hint is not this CLI's"
    started = [line for line in lines if line.startswith("trial ") and " started: " in line]
    assert started, "the concise console prints one line per trial event"
    for noise in (
        "Reporting training result",
        "Checkpoint successfully created",
        "started with configuration",
    ):
        assert noise not in after["console"], f"the concise console left out {noise!r}"


def test_the_sweep_is_recorded_as_interrupted(interrupted):
    _, name, _, _, _, after = interrupted
    row = next(line for line in after["listing"].splitlines() if line.startswith(name))
    assert row.split()[1] == "interrupted"
    assert after["state"].lifecycle == "interrupted"
    assert after["parent"].info.status == "KILLED"
    assert after["parent"].data.tags[STATE_TAG] == "interrupted"


def test_cut_trials_are_killed_and_say_why(interrupted):
    *_, after = interrupted
    runs = list(after["trials"].values())
    assert len(runs) == TRIALS
    cut = [run for run in runs if run.info.status != "FINISHED"]
    assert cut, "the signal came while a trial was running"
    for run in cut:
        assert run.info.status == "KILLED"
        assert run.data.tags.get(STOPPED_BY_TAG) == INTERRUPT_STOPPER


@pytest.mark.parametrize("interrupted", ["SIGINT"], indirect=True)  # one signal's is enough
def test_resume_completes_the_sweep_with_each_epoch_once(interrupted):
    """``study resume`` after either signal runs the same code: it is tested after SIGINT."""
    _, name, storage, root, client, after = interrupted
    resumed = study("resume", name, "--storage", storage)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    state = read_state(root / "runs" / name)
    assert state.lifecycle == "finished" and state.trials == TRIALS
    parent = client.get_run(after["parent"].info.run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags[STATE_TAG] == "finished"
    runs = trial_runs(client)
    assert {run.info.run_id for run in runs} == set(after["trials"]), "continued, not duplicated"
    for run in runs:
        assert run.info.status == "FINISHED"
        assert STOPPED_BY_TAG not in run.data.tags, "the interrupt tag went with the interrupt"
        for metric in ("lr", "knn_top1"):
            assert steps(client, run.info.run_id, metric) == list(range(1, EPOCHS + 1))
    epochs = pq.read_table(root / "runs" / name / RESULTS_DIR / EPOCHS_FILE).to_pylist()
    trials = pq.read_table(root / "runs" / name / RESULTS_DIR / TRIALS_FILE).to_pylist()
    assert sorted(row["status"] for row in trials) == ["FINISHED"] * TRIALS
    by_trial = {run.data.tags[TRIAL_TAG] for run in runs}
    for trial_id in by_trial:
        assert sorted(row["epoch"] for row in epochs if row["trial_id"] == trial_id) == list(
            range(1, EPOCHS + 1)
        )
