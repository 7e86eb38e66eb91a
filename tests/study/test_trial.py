"""The trial function's wait for Tune to take every relayed epoch before it returns (a race in
Ray's Train-to-Tune relay otherwise leaves the trial RUNNING forever). The session is a stand-in
with the three members the wait reads; the end-to-end behaviour is every real sweep's."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from study import trial


class Relay:
    def __init__(self, items: int) -> None:
        self.items = items

    def empty(self) -> bool:
        return self.items == 0


class Session:
    def __init__(self, relayed: int) -> None:
        self._inter_actor_queue = Relay(relayed)
        self.result_queue: queue.Queue = queue.Queue(1)
        self.stop_event = threading.Event()


@pytest.fixture
def session(monkeypatch):
    current = Session(relayed=1)
    monkeypatch.setattr("ray.train._internal.session.get_session", lambda: current)
    return current


def test_waits_until_the_relay_has_been_drained_and_quiet(session):
    threading.Timer(0.4, lambda: setattr(session._inter_actor_queue, "items", 0)).start()
    started = time.monotonic()
    trial.await_relayed_results(settle_s=0.3, limit_s=10)
    assert time.monotonic() - started >= 0.7


def test_a_result_waiting_for_tune_keeps_it_waiting(session):
    session._inter_actor_queue.items = 0
    session.result_queue.put("epoch 3")
    threading.Timer(0.4, session.result_queue.get).start()
    started = time.monotonic()
    trial.await_relayed_results(settle_s=0.3, limit_s=10)
    assert time.monotonic() - started >= 0.7


def test_returns_at_once_when_tune_stops_the_trial(session):
    session.stop_event.set()
    started = time.monotonic()
    trial.await_relayed_results(settle_s=5, limit_s=10)
    assert time.monotonic() - started < 1


def test_gives_up_after_its_limit(session):
    started = time.monotonic()
    trial.await_relayed_results(settle_s=0.1, limit_s=0.5)
    assert 0.5 <= time.monotonic() - started < 2
