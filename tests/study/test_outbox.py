"""The tracking outbox against a real sqlite MLflow store and a tracking server that does not
answer (a closed port on 127.0.0.1): writes are kept in order and replayed exactly once."""

import json
import pickle
import socket
import time

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from study.outbox import Outbox, or_else, read_outbox
from study.tracking import Tracking, start_sweep
from study.vocabulary import OUTBOX_FILE, TRIAL_TAG


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def stores(fresh_tracking_uri):
    """The same sweep seen through a working store and through a server that is down."""
    up = start_sweep(fresh_tracking_uri, "outbox", "outbox", {"epochs": 3})
    down = Tracking(
        f"http://127.0.0.1:{closed_port()}", up.experiment_id, up.parent_run_id, up.study_name
    )
    return up, down


def epoch(outbox, trial, step, lr=0.1):
    return outbox.submit(
        "metrics",
        trial=trial,
        name=f"trial_{trial}",
        step=step,
        once_by="lr",
        metrics={"lr": lr, "knn_top1": step / 10},
        timestamp=int(time.time() * 1000),
    )


def steps(client, run_id, metric="lr"):
    return [point.step for point in client.get_metric_history(run_id, metric)]


def test_writes_are_applied_at_once_when_the_store_answers(tmp_path, stores):
    up, _ = stores
    outbox = Outbox(up, tmp_path)
    assert epoch(outbox, "t1", 1) and epoch(outbox, "t1", 2)
    assert not (tmp_path / OUTBOX_FILE).exists()
    run_id = up.find_trial_run("t1")
    assert steps(up.client(), run_id) == [1, 2]
    assert up.client().get_run(run_id).data.tags[TRIAL_TAG] == "t1"


def test_writes_kept_while_the_server_is_down_are_replayed_in_order_once(tmp_path, stores):
    up, down = stores
    kept = Outbox(down, tmp_path)
    started = time.monotonic()
    assert not epoch(kept, "t1", 1)
    assert not epoch(kept, "t1", 2)
    assert not kept.submit(
        "close", trial="t1", name="trial_t1", status="FINISHED", tags={"study.note": "kept"}
    )
    assert time.monotonic() - started < 30, (
        "an unreachable server fails fast instead of retrying for minutes"
    )
    journal = read_outbox(tmp_path / OUTBOX_FILE)
    assert [operation["op"] for operation in journal] == ["metrics", "metrics", "close"]
    assert [operation.get("step") for operation in journal[:2]] == [1, 2]
    assert up.find_trial_run("t1") is None, "nothing reached the store"

    back = Outbox(up, tmp_path)
    assert back.flush(force=True)
    assert not (tmp_path / OUTBOX_FILE).exists()
    run = up.client().get_run(up.find_trial_run("t1"))
    assert run.info.status == "FINISHED" and run.data.tags["study.note"] == "kept"
    assert steps(up.client(), run.info.run_id) == [1, 2]
    assert epoch(back, "t1", 2), "a step the run has is accepted and not logged again"
    assert steps(up.client(), run.info.run_id) == [1, 2]


def test_after_a_failure_new_writes_queue_behind_the_kept_ones(tmp_path, stores):
    up, down = stores
    outbox = Outbox(down, tmp_path, retry_every_s=3600)
    assert not epoch(outbox, "t1", 1)
    outbox.writer.tracking = up  # the server is back, but the next retry is not due yet
    assert not epoch(outbox, "t1", 2)
    assert [operation["step"] for operation in outbox.pending] == [1, 2]
    assert outbox.flush(force=True)
    assert steps(up.client(), up.find_trial_run("t1")) == [1, 2]


def test_a_refused_write_is_dropped_and_does_not_block_the_others(tmp_path, stores, caplog):
    up, down = stores
    kept = Outbox(down, tmp_path)
    kept.submit("close", trial="t1", name="trial_t1", status="NOT-A-STATUS")
    epoch(kept, "t1", 1)
    assert Outbox(up, tmp_path).flush(force=True)
    assert "refused a close write" in caplog.text
    assert steps(up.client(), up.find_trial_run("t1")) == [1]


def test_parent_writes_and_files(tmp_path, stores):
    up, down = stores
    summary = tmp_path / "summary.txt"
    summary.write_text("best 0.9\n")
    kept = Outbox(down, tmp_path)
    kept.submit("log", metrics={"best_knn_top1": 0.9}, tags={"study.best_trial": "t1"}, timestamp=1)
    kept.submit("artifacts", paths=[str(summary)], artifact_path="results")
    kept.submit("close", status="FINISHED", keep_finished=False)
    assert Outbox(up, tmp_path).flush(force=True)
    client = MlflowClient(up.tracking_uri)
    parent = client.get_run(up.parent_run_id)
    assert (
        parent.data.metrics["best_knn_top1"] == 0.9 and parent.data.tags["study.best_trial"] == "t1"
    )
    assert parent.info.status == "FINISHED"
    assert [artifact.path for artifact in client.list_artifacts(up.parent_run_id, "results")] == [
        "results/summary.txt"
    ]


def test_a_pickled_outbox_shares_the_journal(tmp_path, stores):
    _, down = stores
    outbox = Outbox(down, tmp_path)
    copy = pickle.loads(pickle.dumps(outbox))
    epoch(copy, "t1", 1)
    assert [operation["step"] for operation in outbox.pending] == [1]
    assert json.loads((tmp_path / OUTBOX_FILE).read_text().splitlines()[0])["trial"] == "t1"


def test_unknown_operations_are_refused(tmp_path, stores):
    with pytest.raises(ValueError, match="unknown tracking operation 'delete'"):
        Outbox(stores[0], tmp_path).submit("delete", trial="t1")


def test_reads_fall_back_only_when_the_store_does_not_answer(stores):
    up, down = stores
    assert or_else(down.trial_run_ids, {"t1": "kept"}, "run ids") == {"t1": "kept"}
    assert or_else(up.trial_run_ids, {"t1": "kept"}, "run ids") == {}
    with pytest.raises(MlflowException):
        or_else(lambda: up.client().get_run("no-such-run"), None, "a run")


def test_metric_points_are_kept_while_down_and_logged_once_at_their_steps(tmp_path, stores):
    """The baselines' write: the untrained encoder at step = seed, replayed without duplicates."""
    up, down = stores
    points = [
        ["untrained_knn_top1", 0.5, 0],
        ["untrained_knn_top1", 0.6, 3],
        ["pixels_knn_top1", 0.7, 0],
    ]
    assert not Outbox(down, tmp_path).submit("points", points=points, timestamp=1)
    assert [operation["op"] for operation in read_outbox(tmp_path / OUTBOX_FILE)] == ["points"]
    working = Outbox(up, tmp_path)
    assert working.flush(force=True)
    assert working.submit("points", points=points, timestamp=2), (
        "applied again: nothing new is logged"
    )
    client = MlflowClient(up.tracking_uri)
    history = sorted(
        (point.step, point.value)
        for point in client.get_metric_history(up.parent_run_id, "untrained_knn_top1")
    )
    assert history == [(0, 0.5), (3, 0.6)]
    assert [
        point.value for point in client.get_metric_history(up.parent_run_id, "pixels_knn_top1")
    ] == [0.7]


def test_a_kept_write_is_appended_and_a_line_cut_short_by_a_kill_is_left_out(tmp_path, stores):
    up, down = stores
    kept = Outbox(down, tmp_path)
    journal = tmp_path / OUTBOX_FILE
    assert not epoch(kept, "t1", 1)
    first = journal.read_bytes()
    with journal.open("ab") as cut:  # a driver killed while appending its second write
        cut.write(b'{"op": "metrics", "trial": "t1", "st')
    kept._next_try = 0.0
    assert not epoch(kept, "t1", 2)
    written = journal.read_bytes()
    assert written.startswith(first), "earlier writes are never rewritten by a new one"
    assert [operation["step"] for operation in read_outbox(journal)] == [1, 2]
    replay = Outbox(up, tmp_path)
    assert replay.flush(force=True) and not journal.exists()
    assert steps(up.client(), up.find_trial_run("t1")) == [1, 2]
