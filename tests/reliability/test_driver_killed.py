"""The sweep driver (``study run``) SIGKILLed mid-sweep, then ``study resume``: real processes, a
real local Ray cluster, a real MLflow store. Finished trials are kept, unfinished ones continue
from their checkpoints, the searcher's state and the MLflow runs carry on, and a grid point the
searcher asked for after Tune's last saved state still runs. The sweep is resumed the way
``study run ... --resume`` does it (``if_exists="resume"``), which calls ``study resume``'s
``resume_study``.

Parquet and MLflow keep each epoch once whatever trains it, so whether an unfinished trial
continued or started over is read from its workers' timeline (``trainables.timeline``): both the
killed driver's Ray and the resumed one inherit ``STUDY_TIMELINE``."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest
import ray
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from study import StudyConfig, run_study
from study.state import read_state
from study.vocabulary import BASELINES_FILE, RESULTS_DIR, UNTRAINED_METRIC
from tests.reliability.test_worker_killed import epochs_marked, latest_checkpoints, train_processes
from trainables.timeline import TIMELINE_VARIABLE, read

pytestmark = pytest.mark.ray

EPOCHS = 3
NAME = "killed-driver"
OVERLAPS = "[0.3,0.5,0.7]"
TRIALS = len(OVERLAPS.strip("[]").split(","))
TIMEOUT_S = 300


def ray_processes() -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = stat.read_bytes()
        except OSError:
            continue
        if b"gcs_server" in text or b"raylet" in text or text.startswith(b"ray::"):
            found.append(int(stat.parent.name))
    return found


def wait_for(condition, what: str, timeout: float = TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def trial_runs(client: MlflowClient) -> list:
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    return (
        client.search_runs(experiments, filter_string="tags.`study.role` = 'trial'")
        if experiments
        else []
    )


def steps(client: MlflowClient, run_id: str, metric: str = "lr") -> list[int]:
    return sorted(point.step for point in client.get_metric_history(run_id, metric))


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    assert not ray.is_initialized(), "the workers must inherit STUDY_TIMELINE from a fresh Ray"
    root = tmp_path_factory.mktemp("driver-killed")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    timeline = root / "timeline.jsonl"
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "study_cli",
            "run",
            "--space",
            "overlap",
            "--grid",
            "--grid-only",
            f"views.params.overlap={OVERLAPS}",
            "--epochs",
            str(EPOCHS),
            "--grace-period",
            str(EPOCHS),
            "--max-concurrent-trials",
            "2",
            "--name",
            NAME,
            "--storage",
            str(root / "runs"),
            "--tracking-uri",
            uri,
            "--set",
            "data.limit=640",
            "--set",
            "data.eval_limit=200",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, TIMELINE_VARIABLE: str(timeline)},
    )
    client = MlflowClient(uri)

    def one_finished_one_started():
        if not Path(root / "mlflow.db").exists():
            return None
        runs = trial_runs(client)
        finished = [run for run in runs if run.info.status == "FINISHED"]
        started = [
            run
            for run in runs
            if run.info.status == "RUNNING" and 1 <= len(steps(client, run.info.run_id)) < EPOCHS
        ]
        return (finished, started) if finished and started else None

    try:
        finished, started = wait_for(one_finished_one_started, "a finished trial and a started one")
    except BaseException:
        os.killpg(driver.pid, signal.SIGKILL)
        raise
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    before = {
        run.info.run_id: (run.info.status, steps(client, run.info.run_id), run.info.end_time)
        for run in trial_runs(client)
    }
    os.killpg(driver.pid, signal.SIGKILL) if _group_alive(driver.pid) else None
    wait_for(lambda: not ray_processes(), "the killed driver's Ray to go", timeout=60)
    state_after_kill = read_state(root / "runs" / NAME)
    baselines_written = (root / "runs" / NAME / RESULTS_DIR / BASELINES_FILE).stat().st_mtime_ns
    checkpointed = latest_checkpoints(root / "runs" / NAME / "train")  # Ray is gone: final
    resume_began = time.time()
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv(TIMELINE_VARIABLE, str(timeline))
        result = run_study(
            StudyConfig(  # what `study run ... --resume` does: the same sweep, resumed
                space="overlap",
                grid=True,
                grid_only={"views.params.overlap": [0.3, 0.5, 0.7]},
                epochs=EPOCHS,
                name=NAME,
                storage=str(root / "runs"),
                tracking_uri=uri,
                if_exists="resume",
            )
        )
    finished_ids, started_ids = (
        [run.info.run_id for run in finished],
        [run.info.run_id for run in started],
    )
    after_resume = [entry for entry in read(timeline) if entry["time"] >= resume_began]
    return (
        result,
        client,
        before,
        finished_ids,
        started_ids,
        (checkpointed, after_resume),
        baselines_written,
        state_after_kill,
    )


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_kill_left_the_sweep_running_with_a_dead_driver(resumed):
    *_, state_after_kill = resumed
    assert state_after_kill.lifecycle == "running"


def test_every_trial_finished_and_none_was_duplicated(resumed):
    result, client, before, *_ = resumed
    rows = pq.read_table(result.trials_path).to_pylist()
    assert sorted(row["status"] for row in rows) == ["FINISHED"] * 3
    assert all(row["epochs_run"] == EPOCHS for row in rows)
    runs = trial_runs(client)
    assert len(runs) == 3 and set(before) <= {run.info.run_id for run in runs}, (
        "MLflow runs continued, not duplicated"
    )
    for run in runs:
        assert run.info.status == "FINISHED"
        for metric in ("lr", "knn_top1"):
            assert steps(client, run.info.run_id, metric) == list(range(1, EPOCHS + 1)), (
                "each epoch exactly once"
            )


def test_finished_trials_were_not_rerun(resumed):
    _, client, before, finished, *_ = resumed
    for run_id in finished:
        status, logged, end_time = before[run_id]
        assert status == "FINISHED" and logged == list(range(1, EPOCHS + 1))
        assert client.get_run(run_id).info.end_time == end_time, "nothing was logged to it again"


@pytest.mark.resume
def test_unfinished_trials_continued_from_their_checkpoints(resumed):
    """Each trial cut by the kill is picked up by one resumed worker, which loads the latest
    checkpoint Train had registered for that trial (its Train run directory, ``trial-<id>``, names
    the trial) and trains the epoch after it first. Only trials without a checkpoint at the kill
    train epoch 1 again."""
    result, client, before, _, started, (checkpointed, after_resume), *_ = resumed
    epochs = pq.read_table(result.epochs_path).to_pylist()
    workers = train_processes(after_resume)
    restored = {
        Path(entry["checkpoint"]).parent.name.removeprefix("trial-"): (pid, entry)
        for pid, marks in workers.items()
        for entry in marks
        if entry["phase"] == "checkpoint.restored"
    }
    for run_id in started:
        _, logged, _ = before[run_id]
        trial_id = client.get_run(run_id).data.tags["study.trial_id"]
        rows = sorted(row["epoch"] for row in epochs if row["trial_id"] == trial_id)
        assert rows == list(range(1, EPOCHS + 1))
        assert logged and logged == list(range(1, len(logged) + 1)), (
            "epochs logged before the kill are kept"
        )
        assert trial_id in checkpointed, f"trial {trial_id} had a checkpoint when the driver died"
        checkpoint_dir, epoch = checkpointed[trial_id]
        assert epoch >= len(logged), "every epoch MLflow saw had its checkpoint registered"
        assert trial_id in restored, f"trial {trial_id} was resumed from a checkpoint"
        pid, mark = restored[trial_id]
        assert (mark["epoch"], Path(mark["checkpoint"]).name) == (epoch, checkpoint_dir), (
            "the resumed worker loaded the trial's latest checkpoint"
        )
        assert epochs_marked(workers[pid], "epoch.start") == list(range(epoch + 1, EPOCHS + 1)), (
            f"trial {trial_id} trained from epoch {epoch + 1}, not from 1"
        )
    fresh = [pid for pid, marks in workers.items() if 1 in epochs_marked(marks, "epoch.start")]
    assert len(fresh) == TRIALS - len(checkpointed), (
        "after the resume only trials without a checkpoint at the kill trained epoch 1"
    )


def test_the_searcher_and_the_parent_run_carry_on(resumed):
    result, client, *_ = resumed
    study = optuna.load_study(
        study_name=NAME, storage=f"sqlite:///{result.directory / 'optuna.db'}"
    )
    assert len(study.trials) == 3 and {trial.state for trial in study.trials} == {
        TrialState.COMPLETE
    }
    assert sorted(trial.params["views.params.overlap"] for trial in study.trials) == [0.3, 0.5, 0.7]
    assert client.get_run(result.tracking.parent_run_id).info.status == "FINISHED"
    assert read_state(result.directory).lifecycle == "finished"


def test_the_baselines_were_computed_once_and_read_back_on_resume(resumed):
    result, client, *_, baselines_written, state_after_kill = resumed
    assert (
        result.directory / RESULTS_DIR / BASELINES_FILE
    ).stat().st_mtime_ns == baselines_written, "not computed again"
    assert (
        list(state_after_kill.baselines)
        == list(read_state(result.directory).baselines)
        == result.baselines.rows()
    )
    history = client.get_metric_history(result.tracking.parent_run_id, UNTRAINED_METRIC)
    assert [(point.step, point.value) for point in history] == list(
        result.baselines.untrained.items()
    ), "logged once, step = seed"
