"""Reading sweeps back: MLflow param strings, dataset labels, combined sweeps, gallery settings."""

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dashboards.report import gallery_settings
from dashboards.sweeps import combine, dataset_label, from_tables, parse_param

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["overlap", "blur", "digit-scenes", "small", "resnet18-cifar"]),
)


@given(VALUES)
def test_a_param_string_reads_back_as_the_value_it_was_made_from(value):
    """Params are logged as ``str(value)`` (study.tracking.as_params)."""
    assert parse_param(str(value)) == value


def test_dataset_label_names_the_knn_set_only_when_it_differs():
    assert dataset_label("cifar10", None) == "cifar10"
    assert dataset_label("cifar10", "cifar10") == "cifar10"
    assert dataset_label("coco", "cifar10") == "coco → kNN cifar10"


def sweep(name, scores):
    trials = pd.DataFrame(
        {
            "trial_id": [f"t{i}" for i in range(len(scores))],
            "status": "FINISHED",
            "run_id": None,
            "views.family": "overlap",
            "views.params.overlap": [0.1 * (i + 1) for i in range(len(scores))],
            "data.dataset": "digits",
            "data.eval_dataset": None,
        }
    )
    epochs = pd.DataFrame(
        [
            {"trial_id": f"t{i}", "epoch": epoch, "knn_top1": score * epoch / 2}
            for i, score in enumerate(scores)
            for epoch in (1, 2)
        ]
    )
    return from_tables(name, trials, epochs, 2, "parquet")


def test_final_and_best_scores_come_from_the_epochs_table():
    data = sweep("a", [0.5, 0.7])
    assert data.trials["final_knn_top1"].tolist() == pytest.approx([0.5, 0.7])
    assert data.trials["epochs_run"].tolist() == [2, 2]
    assert data.trials["dataset"].tolist() == ["digits", "digits"]


def test_combined_sweeps_keep_trial_ids_apart():
    combined = combine([sweep("a", [0.5, 0.7]), sweep("b", [0.6])])
    assert combined.name == "a"
    assert combined.trials["trial_id"].tolist() == ["a/t0", "a/t1", "b/t0"]
    assert set(combined.epochs["trial_id"]) == {"a/t0", "a/t1", "b/t0"}
    assert combined.trials["sweep"].tolist() == ["a", "a", "b"]


def test_gallery_settings_are_distinct_and_spread_over_the_sweep():
    trials = sweep("a", [0.1] * 9).trials
    settings = gallery_settings(trials, limit=3)
    assert [params["overlap"] for _, params in settings] == pytest.approx([0.1, 0.5, 0.9])
    assert gallery_settings(pd.concat([trials, trials]), limit=20) == gallery_settings(
        trials, limit=20
    )
