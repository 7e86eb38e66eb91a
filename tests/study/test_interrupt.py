"""The driver's signal handling, with real signals sent to this process: outside Tune a first
signal stops at once; while Tune runs it goes to Tune's stop handler (SIGUSR1's, installed by
``tune.run``; here a stand-in that records the call) and a second one stops at once."""

import os
import signal

import pytest

from study.interrupt import TUNE_SIGINT_ENV, TUNE_STOP_SIGNAL, Interruptions, SweepInterrupted


@pytest.fixture
def tune_stop_handler():
    calls = []
    previous = signal.signal(TUNE_STOP_SIGNAL, lambda number, frame: calls.append(number))
    yield calls
    signal.signal(TUNE_STOP_SIGNAL, previous)


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_while_tuning_a_first_signal_asks_tune_to_stop_and_a_second_stops_at_once(
    number, tune_stop_handler
):
    with Interruptions().handled() as interruptions, interruptions.tuning():
        assert os.environ[TUNE_SIGINT_ENV] == "1", "Tune's own SIGINT handler is off"
        os.kill(os.getpid(), number)
        assert interruptions.received == number.name
        assert tune_stop_handler == [TUNE_STOP_SIGNAL]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), number)
    assert tune_stop_handler == [TUNE_STOP_SIGNAL]


def test_outside_tune_a_first_signal_stops_at_once(tune_stop_handler):
    with pytest.raises(KeyboardInterrupt), Interruptions().handled() as interruptions:
        os.kill(os.getpid(), signal.SIGTERM)
    assert interruptions.received == "SIGTERM"
    assert tune_stop_handler == [], "Tune is not running: nothing to stop gracefully"


def test_the_previous_handlers_and_environment_come_back():
    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    assert TUNE_SIGINT_ENV not in os.environ
    with Interruptions().handled() as interruptions, interruptions.tuning():
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
    assert {number: signal.getsignal(number) for number in before} == before
    assert TUNE_SIGINT_ENV not in os.environ


@pytest.mark.parametrize(
    ("signal_name", "storage", "address", "code", "command"),
    [
        ("SIGINT", "runs", None, 130, "study resume s"),
        ("SIGTERM", "s3://bucket/runs", None, 143, "study resume s --storage s3://bucket/runs"),
        (
            "SIGINT",
            "/tmp/r",
            "ray://head:10001",
            130,
            "study resume s --storage /tmp/r --address ray://head:10001",
        ),
    ],
)
def test_the_resume_hint_names_what_is_not_the_default(
    signal_name, storage, address, code, command
):
    interrupted = SweepInterrupted("s", signal_name, 1, 3, storage, address)
    assert interrupted.exit_code == code
    assert interrupted.resume_command() == command
    assert isinstance(interrupted, KeyboardInterrupt), "library callers see a Ctrl-C"
