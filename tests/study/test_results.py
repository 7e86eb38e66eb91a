"""The results tables' records: one row per epoch, and epochs only MLflow kept filled back in."""

from study.results import (
    TrialRecord,
    epochs_table,
    has_gap,
    one_row_per_epoch,
    trials_table,
    with_logged_epochs,
)


def record(epochs):
    return TrialRecord(
        "t", {}, {}, [{"epoch": epoch, "knn_top1": epoch / 10} for epoch in epochs], None, "run"
    )


def test_a_re_trained_epoch_keeps_its_latest_record():
    rows = [
        {"epoch": 1, "loss": 1.0},
        {"epoch": 2, "loss": 0.9},
        {"epoch": 2, "loss": 0.8},
        {"epoch": 3, "loss": 0.7},
    ]
    assert one_row_per_epoch(rows) == [
        {"epoch": 1, "loss": 1.0},
        {"epoch": 2, "loss": 0.8},
        {"epoch": 3, "loss": 0.7},
    ]


def test_gaps_are_epochs_missing_before_the_last():
    assert not has_gap(record([1, 2, 3]).history)
    assert has_gap(record([2, 3]).history) and has_gap(record([1, 3]).history)


def test_logged_epochs_fill_the_gap_without_replacing_what_tune_kept():
    filled = with_logged_epochs(record([2, 3]), {1: {"knn_top1": 0.05}, 2: {"knn_top1": 0.99}})
    assert [(row["epoch"], row["knn_top1"]) for row in filled.history] == [
        (1, 0.05),
        (2, 0.2),
        (3, 0.3),
    ]


def test_a_trial_records_every_node_it_ran_on_in_order_of_first_use():
    history = [
        {"epoch": 1, "nodes": "a"},
        {"epoch": 2, "nodes": "a"},
        {"epoch": 3, "nodes": "b,c"},
        {"epoch": 4, "nodes": "c,b"},
    ]
    record = TrialRecord("t1", {}, {}, history, None)
    assert record.nodes == "a,b,c"
    assert TrialRecord("t2", {}, {}, [{"epoch": 1}], None).nodes is None
    table = trials_table([record], max_epochs=4)
    assert table["nodes"].to_pylist() == ["a,b,c"]
    assert epochs_table([record])["nodes"].to_pylist() == ["a", "a", "b,c", "c,b"]
