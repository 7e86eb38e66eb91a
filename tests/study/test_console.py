"""The driver's concise console on real Tune ``Trial`` objects (no Ray started): a line per trial
event, Tune's progress table with the searched parameters and the study's columns, and Tune's
interrupt hints left out unless verbose."""

import logging

import pytest
from ray import tune
from ray.train._internal.storage import StorageContext
from ray.tune.experiment import Trial

from study.console import TUNE_LOGGER, TrialConsole, concise_batch, quiet_tune_hints
from study.vocabulary import EPOCH, KNN_TOP1, LOSS

EPOCHS = 4
HINT = (  # ray.tune.tune's words on an interrupt
    "Experiment has been interrupted, but the most recent state was saved.\n"
    "Resume experiment with: Tuner.restore(path=..., trainable=...)"
)


@pytest.fixture(scope="module", autouse=True)
def registered():
    tune.register_trainable("console_trial", lambda config: None)


def trial(tmp_path, number: int, config: dict, result: dict, status: str) -> Trial:
    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="sweep")
    storage.trial_dir_name = f"trial-{number}"
    made = Trial("console_trial", config=config, trial_id=f"t_0000{number}", storage=storage)
    made.update_last_result({"training_iteration": result.get(EPOCH, 0), **result})
    made.set_status(status)
    return made


def test_one_line_per_trial_event(tmp_path, capsys):
    console = TrialConsole(KNN_TOP1, "max", 3, EPOCHS)
    finished = trial(
        tmp_path,
        1,
        {"views.params.overlap": 0.5, "seed": 0},
        {EPOCH: EPOCHS, KNN_TOP1: 0.41, LOSS: -0.8},
        Trial.TERMINATED,
    )
    stopped = trial(
        tmp_path, 2, {"views.params.overlap": 0.2}, {EPOCH: 2, KNN_TOP1: 0.2}, Trial.TERMINATED
    )
    console.on_trial_start(0, [finished], finished)
    console.on_trial_complete(0, [finished], finished)
    console.on_trial_complete(0, [stopped], stopped)
    assert capsys.readouterr().out.splitlines() == [
        "trial t_00001 started: seed=0, views.params.overlap=0.5",
        f"trial t_00001 finished: knn_top1=0.4100 after {EPOCHS} epochs",
        "trial t_00002 stopped by ASHA after epoch 2: knn_top1=0.2000",
    ]


def test_the_progress_table_has_the_searched_parameters_and_the_studys_columns(tmp_path, capsys):
    console = TrialConsole(KNN_TOP1, "max", 2, EPOCHS)
    console.setup(total_num_samples=2)
    trials = [
        trial(
            tmp_path,
            1,
            {"views.params.overlap": 0.5},
            {EPOCH: 3, KNN_TOP1: 0.41, LOSS: -0.8, "z_std": 0.1},
            Trial.RUNNING,
        ),
        trial(tmp_path, 2, {"views.params.overlap": 0.3}, {EPOCH: 1, KNN_TOP1: 0.2}, Trial.PENDING),
    ]
    console.on_step_end(0, trials)  # the first heartbeat; the forced last one needs Ray
    console.on_step_end(1, trials)
    out = capsys.readouterr().out
    assert out.count("Trial status: 1 RUNNING | 1 PENDING") == 1, (
        "every HEARTBEAT_S, not every step"
    )
    header = next(line for line in out.splitlines() if "Trial name" in line)
    assert header.split("│")[1].split() == [
        "Trial",
        "name",
        "status",
        "views.params.overlap",
        "iter",
        EPOCH,
        LOSS,
        KNN_TOP1,
    ], "z_std and the rest of the result stay in result.json"


def test_without_a_table_only_the_events_print(tmp_path, capsys):
    console = TrialConsole(KNN_TOP1, "max", 1, EPOCHS, table=False)
    console.setup(total_num_samples=1)
    running = trial(tmp_path, 1, {}, {EPOCH: 1, KNN_TOP1: 0.3}, Trial.RUNNING)
    console.on_step_end(0, [running])
    console.on_experiment_end([running])
    assert capsys.readouterr().out == ""


def batch(lines, **source):
    return {"ip": "10.0.0.1", "pid": 42, "is_err": True, "lines": lines, **source}


def test_ray_trains_own_actors_are_left_out_and_the_training_workers_kept():
    controller = batch(["core_worker.cc:2465: Actor with class name: 'PreemptionWatcher'"])
    assert concise_batch({**controller, "actor_name": "TrainController"}) is None
    assert concise_batch({**controller, "actor_name": "PlacementGroupCleaner"}) is None
    worker = batch(["WARNING skipped 2 unreadable images"], actor_name="RayTrainWorker")
    assert concise_batch(worker) == worker
    raylet = batch(["1 Workers (tasks / actors) killed due to memory pressure (OOM)"], pid="raylet")
    assert concise_batch(raylet) == raylet


@pytest.mark.parametrize("verbose", [False, True])
def test_tunes_interrupt_hints_are_left_out_unless_verbose(verbose, caplog):
    quiet_tune_hints(verbose)
    try:
        with caplog.at_level(logging.WARNING, logger=TUNE_LOGGER):
            logging.getLogger(TUNE_LOGGER).warning(HINT)
            logging.getLogger(TUNE_LOGGER).warning("a warning that matters")
        messages = [record.getMessage() for record in caplog.records]
        assert "a warning that matters" in messages
        assert (HINT in messages) is verbose
    finally:
        quiet_tune_hints(True)


@pytest.mark.ray
def test_a_real_sweeps_verbose_console_keeps_tunes_and_trains_own_lines(tmp_path):
    """`study run --verbose` on local Ray: the control for the concise console, which
    tests/reliability/test_interrupted.py checks on its real sweep (it leaves these lines out, not
    because they never appear)."""
    import subprocess
    import sys

    run = subprocess.run(
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
            "1",
            "--epochs",
            "2",
            "--name",
            "console",
            "--storage",
            str(tmp_path / "runs"),
            "--tracking-uri",
            f"sqlite:///{tmp_path}/mlflow.db",
            "--verbose",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout + run.stderr
    lines = out.splitlines()
    started = [line for line in lines if line.startswith("trial ") and " started: " in line]
    ended = [line for line in lines if line.startswith("trial ") and " finished: knn_top1=" in line]
    assert len(started) == 1 and len(ended) == 1, out[-3000:]
    assert "Trial status: 1 TERMINATED" in out, "Tune's progress table"
    for noise in (
        "Reporting training result",
        "Checkpoint successfully created",
        "started with configuration",
    ):
        assert noise in out, noise
