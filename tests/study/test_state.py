"""A sweep's typed record (study.state): written and read in one place, old files still read."""

import json
import os
import subprocess
import sys

import pytest

from study.best import BestTrial
from study.state import Driver, Lifecycle, SweepState, read_state, write_state
from study.vocabulary import STATE_FILE
from tests.sweep_states import sweep_state
from trainables.validation import ConfigError


def test_a_record_round_trips_through_study_json(tmp_path):
    state = sweep_state(
        "s",
        lifecycle=Lifecycle.FINISHED,
        driver=Driver("host", 7),
        trials=3,
        best=BestTrial("t1", 0.5, True),
        pending_tracking_writes=2,
        baselines=({"baseline": "pixels"},),
    )
    write_state(tmp_path, state)
    assert read_state(tmp_path) == state
    assert not (tmp_path / (STATE_FILE + ".partial")).exists()
    written = json.loads((tmp_path / STATE_FILE).read_text())
    assert written["state"] == "finished" and written["best_knn_top1"] == 0.5, (
        "the keys older readers know are kept"
    )


def test_a_record_written_before_the_typed_state_still_reads(tmp_path):
    (tmp_path / STATE_FILE).write_text(
        json.dumps(
            {
                "name": "old",
                "config": {"space": "overlap", "grace_period": 2},
                "state": "finished",
                "epochs": 4,
                "tracking": {"experiment_id": "1", "parent_run_id": "p"},
                "best_knn_top1": 0.4,
            }
        )
    )
    state = read_state(tmp_path)
    assert state.lifecycle is Lifecycle.FINISHED and state.driver is None and state.best is None
    assert (state.asha.grace_period, state.asha.max_t, state.early_stopping) == (2, 4, True)


def test_a_folder_without_a_record_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no study.json"):
        read_state(tmp_path)


def test_a_dead_driver_is_told_from_a_live_one():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert Driver.this().alive()
    assert not Driver(os.uname().nodename, process.pid).alive()
    running = sweep_state("s", lifecycle=Lifecycle.RUNNING)
    assert running.replace(driver=Driver.this()).live
    assert not running.replace(driver=Driver(os.uname().nodename, process.pid)).live
    assert not running.live, "no driver recorded"
    assert not running.replace(lifecycle=Lifecycle.FINISHED, driver=Driver.this()).live


def test_records_are_frozen():
    with pytest.raises(AttributeError):
        sweep_state("s").lifecycle = Lifecycle.FAILED  # type: ignore[misc]
    assert isinstance(sweep_state("s"), SweepState)
