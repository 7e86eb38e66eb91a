"""Realised view statistics: what a batch of geometries contributes, and view_stats.json
across versions."""

import json

import pytest
import torch

from trainables.view_stats import (
    HISTOGRAMS,
    REALISED_METRICS,
    EpochStats,
    HistogramAxis,
    ViewHistograms,
    realised_values,
)
from trainables.views import ViewGeometry


def geometry(boxes, height=10, width=20):
    boxes = torch.tensor(boxes, dtype=torch.float64)
    return ViewGeometry(
        boxes=boxes, image_size=torch.tensor([height, width]).expand(len(boxes), 2).clone()
    )


def test_realised_values_per_pair_and_per_view():
    pair = geometry([[[0, 0, 10, 10], [5, 0, 20, 5]]])
    values = realised_values(pair)
    assert values["overlap"].tolist() == [pytest.approx(25 / 200)]
    assert values["crop_area"].tolist() == [pytest.approx(0.5), pytest.approx(75 / 200)]
    assert values["crop_aspect"].tolist() == [pytest.approx(1.0), pytest.approx(3.0)]


def test_epoch_stats_log_mean_and_std_of_every_statistic():
    stats = EpochStats()
    stats.add_step(
        {"loss": torch.tensor(1.0)},
        geometry([[[0, 0, 10, 10], [0, 0, 20, 10]], [[0, 0, 5, 10], [0, 0, 20, 10]]]),
    )
    metrics = stats.metrics(seconds=1.0)
    assert set(REALISED_METRICS) <= set(metrics)
    assert metrics["crop_area_mean"] == pytest.approx((0.5 + 1 + 0.25 + 1) / 4)
    assert metrics["crop_aspect_mean"] == pytest.approx((1 + 2 + 0.5 + 2) / 4)
    assert metrics["images_per_s"] == 2.0


def test_aspect_histogram_is_even_in_log2_and_clamps_the_ends():
    axis = HISTOGRAMS["crop_aspect"]
    counts = axis.counts(
        torch.tensor([1 / 8, 0.25, 1.0, 1.0001, 4.0, 100.0], dtype=torch.float64), 4
    )
    assert counts.tolist() == [2, 0, 2, 2]
    assert axis.edges(4) == [0.25, 0.5, 1.0, 2.0, 4.0]
    assert HistogramAxis().edges(2) == [0.0, 0.5, 1.0]


def test_view_stats_written_before_the_crop_statistics_still_load(tmp_path):
    old = {
        "bin_edges": [i / 20 for i in range(21)],
        "epochs": 3,
        "overlap": [1] * 20,
        "phi": [2] * 20,
    }
    (tmp_path / "view_stats.json").write_text(json.dumps(old))
    loaded = ViewHistograms.load(tmp_path)
    assert loaded.epochs == 3 and int(loaded.counts["phi"].sum()) == 40
    assert (
        int(loaded.counts["crop_area"].sum()) == 0 and int(loaded.counts["crop_aspect"].sum()) == 0
    )
    loaded.add_epoch({name: torch.ones(20, dtype=torch.int64) for name in HISTOGRAMS})
    again = ViewHistograms.from_json(json.loads(json.dumps(loaded.to_json())))
    assert (
        all(torch.equal(again.counts[name], loaded.counts[name]) for name in HISTOGRAMS)
        and again.epochs == 4
    )
