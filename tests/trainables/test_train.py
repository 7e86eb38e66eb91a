"""The Ray-free training function: reports, checkpoints, resume and margins
(learning: test_learning.py)."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from trainables.recipes import recipe
from trainables.train import load_checkpoint, scheduled_lr, train
from trainables.view_stats import ViewHistograms, unit_histogram

REQUIRED_METRICS = {
    "epoch",
    "loss",
    "knn_top1",
    "knn_top5",
    "z_std",
    "floor_active",
    "images_per_s",
    "overlap_mean",
    "overlap_std",
    "distance_mean",
    "distance_std",
    "phi_mean",
    "phi_std",
    "margin_mean",
    "crop_area_mean",
    "crop_area_std",
    "crop_aspect_mean",
    "crop_aspect_std",
}


def quick(**overrides):
    """The digits recipe cut down to a few seconds per epoch."""
    settings = {
        "data.limit": 256,
        "data.eval_limit": 200,
        "epochs": 2,
        "batch_size": 64,
        "views.size": 16,
    }
    settings.update(overrides)
    return recipe("digits", **settings)


class Recorder:
    def __init__(self):
        self.reports = []

    def __call__(self, metrics, checkpoint):
        assert checkpoint is None or (checkpoint / "checkpoint.pt").is_file()
        self.reports.append((dict(metrics), checkpoint))


def test_reports_every_epoch_with_metrics_and_a_checkpoint(tmp_path):
    recorder = Recorder()
    history = train(
        quick(**{"views.family": "overlap", "views.params": {"overlap": 0.3}}),
        recorder,
        workdir=tmp_path,
    )
    assert [metrics["epoch"] for metrics, _ in recorder.reports] == [1, 2]
    for metrics, _ in recorder.reports:
        assert REQUIRED_METRICS <= set(metrics)
        assert all(math.isfinite(value) for value in metrics.values())
        assert metrics["overlap_mean"] == pytest.approx(0.3, abs=1e-4)
        assert 0 <= metrics["knn_top1"] <= metrics["knn_top5"] <= 1
    assert history == [metrics for metrics, _ in recorder.reports]
    assert [p.name for p in tmp_path.iterdir()] == ["epoch_0002"], (
        "older checkpoints are removed once reported"
    )
    realised = ViewHistograms.load(tmp_path / "epoch_0002")
    assert realised.epochs == 2
    assert int(realised.counts["overlap"].sum()) == int(realised.counts["phi"].sum()) == 2 * 256
    assert int(realised.counts["overlap"][6]) == 2 * 256, (
        "every overlap is 0.3, in bin [0.30, 0.35)"
    )


def test_decoupled_overlap_logs_the_crops_it_trained_on(tmp_path):
    """Crops of exactly half the image, aspect in [3/4, 4/3], sharing 0.3: what the run logs."""
    params = {"overlap": 0.3, "crop_area": [0.5, 0.5], "crop_ratio": [0.75, 4 / 3]}
    recorder = Recorder()
    train(quick(**{"views.family": "overlap", "views.params": params}), recorder, workdir=tmp_path)
    for metrics, _ in recorder.reports:
        assert (
            metrics["crop_area_mean"] == pytest.approx(0.5, abs=1e-9)
            and metrics["crop_area_std"] < 1e-9
        )
        assert 0.75 <= metrics["crop_aspect_mean"] <= 4 / 3 and metrics["crop_aspect_std"] > 0.01
        assert metrics["overlap_mean"] == pytest.approx(0.3, abs=1e-9)
    realised = ViewHistograms.load(tmp_path / "epoch_0002")
    assert int(realised.counts["crop_area"][10]) == 2 * 2 * 256, (
        "both views of every pair, in bin [0.50, 0.55)"
    )
    aspect_bins = realised.counts["crop_aspect"].nonzero().flatten().tolist()
    assert aspect_bins == [7, 8, 9, 10, 11, 12], (
        "log2 aspect in [-0.415, 0.415]: bins [-0.6, -0.4) to [0.4, 0.6) of 20 over [-2, 2]"
    )


@given(st.lists(st.floats(0, 1), max_size=200), st.integers(1, 40))
def test_unit_histogram_counts_each_value_in_its_bin(values, bins):
    counts = unit_histogram(torch.tensor(values, dtype=torch.float64), bins)
    assert counts.shape == (bins,) and int(counts.sum()) == len(values)
    for value in values:
        index = min(int(value * bins + 1e-9), bins - 1)
        assert counts[index] >= 1


class Crash(RuntimeError):
    pass


def crash_after(epoch):
    def report(metrics, checkpoint):
        if metrics["epoch"] == epoch:
            raise Crash(f"simulated crash after epoch {epoch}")

    return report


def test_without_warm_up_the_lr_follows_simsiams_cosine_decay():
    lrs = [scheduled_lr(0.1, epoch, 10) for epoch in range(10)]
    assert lrs == pytest.approx(
        [0.1 * 0.5 * (1 + math.cos(math.pi * epoch / 10)) for epoch in range(10)]
    )
    assert [scheduled_lr(0.1, epoch, 10, schedule="constant") for epoch in range(10)] == [0.1] * 10


@given(st.integers(1, 30), st.integers(1, 30))
def test_warm_up_ramps_linearly_to_the_peak_then_decays_over_the_epochs_left(warmup, after):
    epochs = warmup + after
    lrs = [scheduled_lr(0.2, epoch, epochs, warmup_epochs=warmup) for epoch in range(epochs)]
    assert lrs[:warmup] == pytest.approx([0.2 * (epoch + 1) / warmup for epoch in range(warmup)])
    assert lrs[warmup] == pytest.approx(0.2)
    assert lrs[warmup:] == pytest.approx(
        [scheduled_lr(0.2, epoch, after) for epoch in range(after)]
    )
    assert all(lr > 0 for lr in lrs)


def test_resume_continues_exactly_where_the_checkpoint_left_off(tmp_path):
    config = quick(epochs=3)
    uninterrupted = train(config, workdir=tmp_path / "full")
    with pytest.raises(Crash):
        train(config, crash_after(2), workdir=tmp_path / "crashed", labels={"nodes": "first-node"})
    recorder = Recorder()
    resumed = train(
        config,
        recorder,
        resume_from=tmp_path / "crashed" / "epoch_0002",
        workdir=tmp_path / "resumed",
        labels={"nodes": "second-node"},
    )
    assert [metrics["epoch"] for metrics in resumed] == [3]
    assert [(metrics["epoch"], checkpoint is None) for metrics, checkpoint in recorder.reports] == [
        (2, True),
        (3, False),
    ], (
        "the checkpoint's epoch is reported again first (its report may have been lost), "
        "without a new checkpoint"
    )
    assert [metrics["nodes"] for metrics, _ in recorder.reports] == ["first-node", "second-node"], (
        "an epoch reported again keeps the labels of the run that trained it"
    )
    assert resumed[0]["loss"] == pytest.approx(uninterrupted[2]["loss"], rel=1e-4)
    assert resumed[0]["knn_top1"] == pytest.approx(uninterrupted[2]["knn_top1"], abs=0.01)
    full_counts = ViewHistograms.load(tmp_path / "full" / "epoch_0003")
    resumed_counts = ViewHistograms.load(tmp_path / "resumed" / "epoch_0003")
    assert resumed_counts.epochs == 3, "histograms carry over a resume"
    for name, counts in full_counts.counts.items():
        assert torch.equal(resumed_counts.counts[name], counts), name
    final = load_checkpoint(tmp_path / "resumed" / "epoch_0003")
    reference = load_checkpoint(tmp_path / "full" / "epoch_0003")
    assert final["epoch"] == reference["epoch"] == 3
    for name, tensor in reference["model"].items():
        assert torch.allclose(final["model"][name].float(), tensor.float(), atol=1e-4), name


def test_margin_modes_change_the_floor(tmp_path):
    none = train(quick(epochs=1), workdir=tmp_path / "none")[0]
    fixed = train(
        quick(epochs=1, **{"margin.mode": "fixed", "margin.m": 1.5}), workdir=tmp_path / "fixed"
    )[0]
    distance = train(
        quick(epochs=1, **{"margin.mode": "distance", "margin.k": 20.0}),
        workdir=tmp_path / "distance",
    )[0]
    assert none["floor_active"] == 0.0
    assert fixed["floor_active"] > 0.5
    assert 0.0 < distance["floor_active"] < 1.0
    assert none["margin_mean"] == 0.0 and fixed["margin_mean"] == pytest.approx(1.5)
    assert distance["margin_mean"] == pytest.approx(20.0 * distance["phi_mean"], rel=1e-4), (
        "the mean of k * phi"
    )
