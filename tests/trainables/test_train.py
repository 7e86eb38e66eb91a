"""The Ray-free training function: reports, checkpoints, resume and margins
(learning: test_learning.py)."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import trainables.train
from trainables.config import MarginConfig
from trainables.loss import floored, negative_cosine, simsiam_loss_terms
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


DISTANCE_K = 20.0
"""``margin.k`` of the distance-mode run: its floors ``-1 + 20 * phi`` fall on both sides of the
first epoch's terms, so a batch has pairs held at the floor and pairs trained (checked below)."""


class LossInputs:
    """What the training loop handed the loss, step by step: each batch's phi (recorded from
    the view batches it drew) and the outputs, margin and floor fraction of its loss call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.phis: list[torch.Tensor] = []
        self.calls: list[dict] = []
        view_batches, loss_terms = (
            trainables.train.view_batches,
            trainables.train.simsiam_loss_terms,
        )

        def recorded_batches(*args, **kwargs):
            for batch in view_batches(*args, **kwargs):
                self.phis.append(batch.geometry.phi.clone())
                yield batch

        def recorded_loss(p1, p2, z1, z2, margin=None):
            terms = loss_terms(p1, p2, z1, z2, margin)
            outputs = {
                name: t.detach().clone() for name, t in zip("p1 p2 z1 z2".split(), (p1, p2, z1, z2))
            }
            self.calls.append({**outputs, "margin": margin, "terms": terms})
            return terms

        monkeypatch.setattr(trainables.train, "view_batches", recorded_batches)
        monkeypatch.setattr(trainables.train, "simsiam_loss_terms", recorded_loss)


def test_margin_modes_change_the_floor(tmp_path, monkeypatch):
    """The three modes in a real epoch; in distance mode every step's floor is ``-1 + k * phi``
    of each pair, recomputed here from the outputs the loop handed the loss."""
    none = train(quick(epochs=1), workdir=tmp_path / "none")[0]
    fixed = train(
        quick(epochs=1, **{"margin.mode": "fixed", "margin.m": 1.5}), workdir=tmp_path / "fixed"
    )[0]
    recorded = LossInputs(monkeypatch)
    distance = train(
        quick(epochs=1, **{"margin.mode": "distance", "margin.k": DISTANCE_K}),
        workdir=tmp_path / "distance",
    )[0]
    assert none["floor_active"] == 0.0
    assert fixed["floor_active"] > 0.5
    assert 0.0 < distance["floor_active"] < 1.0
    assert none["margin_mean"] == 0.0 and fixed["margin_mean"] == pytest.approx(1.5)
    assert distance["margin_mean"] == pytest.approx(DISTANCE_K * distance["phi_mean"], rel=1e-4), (
        "the mean of k * phi"
    )
    assert len(recorded.calls) == len(recorded.phis) > 0
    held_and_free = 0
    for phi, call in zip(recorded.phis, recorded.calls, strict=True):
        assert phi.std() > 0, "the pairs of a batch lie at different distances"
        assert torch.allclose(call["margin"], DISTANCE_K * phi.float()), "m = k * phi, pair by pair"
        floor = -1 + DISTANCE_K * phi.double()
        term_12 = -F.cosine_similarity(call["p1"].double(), call["z2"].double(), dim=1)
        term_21 = -F.cosine_similarity(call["p2"].double(), call["z1"].double(), dim=1)
        held = torch.cat((term_12 <= floor, term_21 <= floor))
        assert float(call["terms"].floor_active) == pytest.approx(held.double().mean().item())
        expected = 0.5 * (
            torch.maximum(term_12, floor).mean() + torch.maximum(term_21, floor).mean()
        )
        assert float(call["terms"].loss.detach()) == pytest.approx(expected.item(), abs=1e-5)
        held_and_free += bool(held.any() and not held.all())
    assert held_and_free > 0, "some step holds some of its pairs at the floor and not others"


FLOOR_K = 2.0
"""With k = 2 the four pairs below get floors -0.9, -0.8, -0.4 and -0.2 (mean -0.575)."""
FLOOR_CASES = {
    # phi: raw term -cos(p, z), and whether the pair's own floor -1 + k * phi holds it
    0.05: (-0.95, True),  # below its floor -0.9 (and below the mean floor)
    0.10: (-0.70, False),  # above its floor -0.8, below the mean floor: a mean floor would hold it
    0.30: (-0.50, True),  # below its floor -0.4, above the mean floor: only its own floor holds it
    0.40: (-0.10, False),  # above its floor -0.2
}


def pairs_with_terms(terms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit predictions ``p`` and targets ``z`` with ``-cos(p_i, z_i) = terms[i]``."""
    cosines = -terms
    p = torch.stack((torch.ones_like(terms), torch.zeros_like(terms)), dim=1)
    z = torch.stack((cosines, (1 - cosines**2).sqrt()), dim=1)
    return p, z


def test_the_distance_floor_holds_each_pair_at_minus_one_plus_k_times_its_phi():
    """Pair by pair, the floored term is ``max(-cos, -1 + k * phi_i)`` and gets no gradient where
    the floor holds: the cases put a pair between its own floor and the batch's mean floor on
    each side, so a floor shared by the batch (a mean phi, a fixed m) would misjudge them."""
    phi = torch.tensor(list(FLOOR_CASES), dtype=torch.float64)
    raw = torch.tensor([term for term, _ in FLOOR_CASES.values()], dtype=torch.float64)
    held = torch.tensor([is_held for _, is_held in FLOOR_CASES.values()])
    floor = -1 + FLOOR_K * phi
    margin = MarginConfig(mode="distance", k=FLOOR_K).margin(phi)
    assert torch.allclose(margin, FLOOR_K * phi)

    p, z = pairs_with_terms(raw)
    term, active = floored(negative_cosine(p, z), margin)
    assert torch.allclose(term, torch.maximum(raw, floor))
    assert torch.equal(active, held)
    assert torch.allclose(term[held], floor[held]) and torch.allclose(term[~held], raw[~held])

    p1 = p.clone().requires_grad_(True)
    terms = simsiam_loss_terms(p1, p.clone(), z.clone(), z.clone(), margin)
    terms.loss.backward()
    assert float(terms.loss.detach()) == pytest.approx(float(torch.maximum(raw, floor).mean()))
    assert float(terms.floor_active) == pytest.approx(float(held.double().mean()))
    gradient = p1.grad.abs().sum(dim=1)
    assert torch.equal(gradient == 0, held), "no gradient exactly where the pair's floor holds"
