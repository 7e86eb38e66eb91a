"""The report's paired comparisons and the verdicts they lead to, on synthetic trials tables (pure,
no sweep); and the early-stopping settings read back from a sweep's state."""

import numpy as np
import pandas as pd
import pytest

from dashboards.comparisons import (
    compare_arms,
    cutout_comparisons,
    grid_comparisons,
    margin_comparisons,
)
from dashboards.early_stopping import settings_of
from dashboards.sweeps import from_tables
from study.config import Asha, StudyConfig, plan
from study.state import SweepState
from tests.study.test_early_stopping import epochs_frame
from tests.sweep_states import sweep_state


def trials_frame(rows):
    """A tidy trials table: one row per (dataset, family, params, seed, score)."""
    frame = pd.DataFrame(rows)
    frame["trial_id"] = [f"t{index}" for index in range(len(frame))]
    frame["status"] = frame.get("status", "FINISHED")
    frame["status"] = frame["status"].fillna("FINISHED")
    frame["final_knn_top1"] = frame.pop("score")
    return frame


def overlap_rows(gap):
    rng = np.random.default_rng(1)
    rows = []
    for seed in range(4):
        offset = rng.normal(0, 0.05)  # a seed's shared luck: what pairing removes
        for overlap, mean in ((0.2, 0.5), (0.5, 0.5 + gap), (0.8, 0.5)):
            rows.append(
                {
                    "dataset": "digits",
                    "views.family": "overlap",
                    "views.params.overlap": overlap,
                    "seed": seed,
                    "score": mean + offset + rng.normal(0, 0.01),
                }
            )
    return rows


def test_grid_comparisons_pair_each_point_with_the_best():
    found = grid_comparisons(trials_frame(overlap_rows(gap=0.2)), "Fig. 2a")
    assert [(item.baseline, item.arm) for item in found.comparisons] == [
        ("the best overlap 0.5", "overlap 0.2"),
        ("the best overlap 0.5", "overlap 0.8"),
    ]
    assert all(
        item.result.pairs == 4 and item.result.excludes_zero and item.result.difference < 0
        for item in found.comparisons
    )
    assert found.summary().startswith("In Fig. 2a, 2 of 2 tested differences are outside noise")
    noisy = grid_comparisons(trials_frame(overlap_rows(gap=0.001)), "Fig. 2a")
    assert noisy.summary() == (
        "All differences in Fig. 2a are within noise: no point's 95% interval of the paired "
        "difference to the best excludes 0."
    )


def test_pairs_are_matched_by_seed_not_by_order():
    a = trials_frame([{"seed": seed, "score": 0.5 + 0.1 * seed} for seed in (0, 1, 2)])
    b = trials_frame([{"seed": seed, "score": 0.51 + 0.1 * seed} for seed in (2, 0, 1, 7)])
    result = compare_arms(a, b)
    assert (
        result.pairs == 3
        and result.difference == pytest.approx(0.01)
        and result.low == pytest.approx(0.01)
    )
    stopped = b.assign(status=["STOPPED", "FINISHED", "FINISHED", "FINISHED"])
    assert compare_arms(a, stopped).pairs == 2, "a trial that did not run every epoch is left out"


def test_cutout_and_margin_comparisons_name_their_arms():
    rows = [
        {
            "dataset": "digits",
            "views.family": "cutout",
            "views.params.hole": 0.5,
            "views.params.fill": fill,
            "seed": 0,
            "score": score,
        }
        for fill, score in (("zero", 0.4), ("blur", 0.45))
    ]
    (only,) = cutout_comparisons(trials_frame(rows)).comparisons
    assert (only.setting, only.baseline, only.arm, only.result.pairs) == (
        "digits, cutout size 0.5",
        "cutout",
        "cutout-blur",
        1,
    )
    assert only.result.difference == pytest.approx(0.05) and "not testable" in only.sentence()
    margins = [
        {
            "dataset": "scenes",
            "views.family": "overlap",
            "margin.mode": mode,
            "seed": seed,
            "score": score + seed / 10,
        }
        for seed in (0, 1)
        for mode, score in (("none", 0.3), ("fixed", 0.35), ("distance", 0.5))
    ]
    found = margin_comparisons(trials_frame(margins))
    assert [(item.baseline, item.arm) for item in found.comparisons] == [
        ("vanilla", "fixed margin"),
        ("vanilla", "distance-based margin"),
        ("fixed margin", "distance-based margin"),
    ]
    assert [item.result.difference for item in found.comparisons] == pytest.approx(
        [0.05, 0.2, 0.15]
    )


def test_two_distance_arms_are_compared_as_arms_of_their_own():
    """The paper's k=1 and the arm matched to the fixed margin's size stay apart."""
    arms = (
        ("none", {}, 0.3),
        ("fixed", {"margin.m": 0.2}, 0.35),
        ("distance", {"margin.k": 1.0}, 0.32),
        ("distance", {"margin.k": 1.95}, 0.4),
    )
    margins = [
        {
            "dataset": "scenes",
            "views.family": "random_crop",
            "margin.mode": mode,
            **values,
            "seed": seed,
            "score": score + seed / 10,
        }
        for seed in (0, 1)
        for mode, values, score in arms
    ]
    found = margin_comparisons(trials_frame(margins))
    names = ["vanilla", "fixed margin", "distance-based margin k=1", "distance-based margin k=1.95"]
    assert [(item.baseline, item.arm) for item in found.comparisons] == [
        (a, b) for index, a in enumerate(names) for b in names[index + 1 :]
    ]
    by_pair = {(item.baseline, item.arm): item.result.difference for item in found.comparisons}
    assert by_pair[("fixed margin", "distance-based margin k=1.95")] == pytest.approx(0.05)
    assert by_pair[("distance-based margin k=1", "distance-based margin k=1.95")] == pytest.approx(
        0.08
    )


def cutout_rows(seeds=(0, 1, 2)):
    """Zero fill and blurs 0.5 and 1.0 at holes 0.3 and 0.5; blur 1.0 is 0.1 above cutout at 0.5."""
    rows = []
    for seed in seeds:
        for hole in (0.3, 0.5):
            for fill, blur, gain in (
                ("zero", None, 0.0),
                ("blur", 0.5, 0.02 * seed),
                ("blur", 1.0, 0.1 if hole == 0.5 else -0.01 * seed),
            ):
                row = {
                    "dataset": "patterns",
                    "views.family": "cutout",
                    "views.params.hole": hole,
                    "views.params.fill": fill,
                    "seed": seed,
                    "score": 0.3 + seed / 10 + gain,
                }
                if blur is not None:
                    row["views.params.blur"] = blur
                rows.append(row)
    return rows


def test_each_blur_strength_is_compared_with_cutout_at_the_same_hole():
    found = cutout_comparisons(trials_frame(cutout_rows()))
    assert [(item.setting, item.baseline, item.arm) for item in found.comparisons] == [
        ("patterns, cutout size 0.3", "cutout", "cutout-blur 0.5"),
        ("patterns, cutout size 0.3", "cutout", "cutout-blur 1"),
        ("patterns, cutout size 0.5", "cutout", "cutout-blur 0.5"),
        ("patterns, cutout size 0.5", "cutout", "cutout-blur 1"),
    ]
    assert [item.result.difference for item in found.comparisons] == pytest.approx(
        [0.02, -0.01, 0.02, 0.1]
    )
    assert all(item.result.pairs == 3 for item in found.comparisons)
    assert "cutout size 0.5: cutout-blur 1 vs cutout (+0.1000)" in found.summary()


def test_a_blur_strength_without_its_cutout_is_not_compared():
    rows = [
        row
        for row in cutout_rows()
        if not (row["views.params.hole"] == 0.3 and row["views.params.fill"] == "zero")
    ]
    found = cutout_comparisons(trials_frame(rows))
    assert {item.setting for item in found.comparisons} == {"patterns, cutout size 0.5"}


def test_the_cutout_figure_draws_one_bar_series_per_arm():
    from dashboards.figures import cutout_figure

    trials = trials_frame(cutout_rows()).assign(**{"data.dataset": "patterns"})
    epochs = epochs_frame(
        {trial_id: [score] for trial_id, score in zip(trials["trial_id"], trials["final_knn_top1"])}
    )
    (axes,) = cutout_figure(from_tables("fig4", trials, epochs, 1, "parquet")).get_axes()
    labels = [
        container.get_label()
        for container in axes.containers
        if getattr(container, "patches", None)
    ]
    assert labels == ["cutout", "cutout-blur 0.5", "cutout-blur 1"]
    (bars,) = [
        c
        for c in axes.containers
        if getattr(c, "patches", None) and c.get_label() == "cutout-blur 1"
    ]
    assert [bar.get_height() for bar in bars] == pytest.approx([0.4 - 0.01, 0.5])
    assert [tick.get_text() for tick in axes.get_xticklabels()] == ["0.3", "0.5"]


def test_a_sweep_recorded_before_the_switch_ran_asha():
    old = SweepState.from_dict(
        {
            "name": "old",
            "config": {"space": "overlap", "grace_period": 5, "reduction_factor": 3},
            "epochs": 3,
            "tracking": {"experiment_id": "0", "parent_run_id": "parent"},
        }
    )
    sweep = from_tables(
        "old",
        pd.DataFrame({"trial_id": ["t"], "status": ["FINISHED"], "data.dataset": ["digits"]}),
        epochs_frame({"t": [0.1, 0.2, 0.3]}),
        3,
        "parquet",
        state=old,
    )
    assert settings_of(sweep) == (Asha(3, 3, 3), True)
    recorded = plan(StudyConfig(space="overlap", grid=True, epochs=3))
    state = sweep_state("new").replace(early_stopping=recorded.early_stopping, asha=recorded.asha)
    assert settings_of(
        from_tables("new", sweep.trials, sweep.epochs, 3, "parquet", state=state)
    ) == (Asha(1, 2, 3), False)
