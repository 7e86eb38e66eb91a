"""One stored sweep as one object (study.sweep.Sweep): its record is written through save(),
read back by open(), and its plan is resolved once per command. No Ray."""

import pytest

import study.config
import study.prepare
import study.sweep
from study import StudyConfig
from study.prepare import prepare_study
from study.state import Lifecycle, read_state
from study.storage import SweepStorage
from study.sweep import Sweep
from study.tracking import start_sweep


@pytest.fixture
def created(tmp_path, fresh_tracking_uri):
    config = StudyConfig(
        space="overlap",
        dataset="digits",
        name="record",
        storage=str(tmp_path / "runs"),
        tracking_uri=fresh_tracking_uri,
        epochs=2,
    )
    prepared = prepare_study(config)
    prepared.directory.mkdir(parents=True)
    tracking = start_sweep(prepared.tracking_uri, "record", "record", {})
    return Sweep.create(prepared.storage, config, prepared.plan, tracking), tracking


def test_a_new_sweep_is_recorded_at_once_and_reads_back(created):
    sweep, tracking = created
    assert read_state(sweep.directory) == sweep.state
    assert sweep.state.lifecycle is Lifecycle.RUNNING and sweep.state.driver is None
    assert (sweep.state.epochs, sweep.state.num_trials, sweep.state.mode) == (2, 16, "search")
    opened = Sweep.open("record", sweep.storage.location)
    assert opened.state == sweep.state
    assert opened.tracking == tracking


def test_save_changes_the_record_and_the_file(created):
    sweep, _ = created
    sweep.save(lifecycle=Lifecycle.FINISHED, trials=3)
    assert read_state(sweep.directory).lifecycle is Lifecycle.FINISHED
    assert Sweep.open("record", sweep.storage.location).state.trials == 3
    assert sweep.trials_path == sweep.directory / "results" / "trials.parquet"


def test_the_plan_is_resolved_once_per_command(created, monkeypatch):
    sweep, _ = created
    calls = []
    original = study.config.plan

    def counted(config):
        calls.append(config)
        return original(config)

    monkeypatch.setattr(study.sweep, "plan", counted)
    monkeypatch.setattr(study.prepare, "plan", counted)
    opened = Sweep.open("record", sweep.storage.location)
    assert opened.plan is opened.plan and len(calls) == 1, (
        "an opened sweep plans on first use, once"
    )
    calls.clear()
    prepare_study(
        StudyConfig(
            space="overlap",
            name="another",
            storage=sweep.storage.location,
            tracking_uri=sweep.state.tracking_uri,
        )
    )
    assert len(calls) == 1, "prepare_study resolves the plan once (data root and GPUs included)"


def test_a_stored_sweep_that_is_not_there_is_a_config_error(tmp_path):
    from trainables.validation import ConfigError

    with pytest.raises(ConfigError, match="name='missing'"):
        Sweep.open("missing", SweepStorage(str(tmp_path)).location)
