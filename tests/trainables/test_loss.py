import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from trainables.loss import distance_margin, normalized_std, simsiam_loss, simsiam_loss_terms


def official_simsiam_loss(p1, p2, z1, z2):
    """The loss of facebookresearch/simsiam's main_simsiam.py."""
    criterion = torch.nn.CosineSimilarity(dim=1)
    return -(criterion(p1, z2.detach()).mean() + criterion(p2, z1.detach()).mean()) * 0.5


def reference_floored_loss(p1, p2, z1, z2, margins):
    """Eq. 1 term by term in plain Python: max(-cos, -1 + m), averaged over the batch, halved."""
    total, active = 0.0, 0
    batch = p1.shape[0]
    for i in range(batch):
        for p, z in ((p1[i], z2[i]), (p2[i], z1[i])):
            negative_cos = -float(torch.dot(p, z).detach() / (p.norm() * z.norm()).detach())
            floor = -1 + float(margins[i])
            total += max(negative_cos, floor)
            active += negative_cos <= floor
    return 0.5 * total / batch, active / (2 * batch)


def random_outputs(seed, batch=16, dim=8, requires_grad=True):
    generator = torch.Generator().manual_seed(seed)
    tensors = [torch.randn(batch, dim, generator=generator, dtype=torch.float64) for _ in range(4)]
    return [t.requires_grad_(requires_grad) for t in tensors]


@given(seed=st.integers(0, 10_000), batch=st.integers(1, 32))
def test_no_margin_equals_official_simsiam_loss(seed, batch):
    p1, p2, z1, z2 = random_outputs(seed, batch)
    assert torch.allclose(simsiam_loss(p1, p2, z1, z2), official_simsiam_loss(p1, p2, z1, z2))


@given(seed=st.integers(0, 10_000), margin=st.floats(0.0, 2.0))
def test_float_margin_matches_reference(seed, margin):
    p1, p2, z1, z2 = random_outputs(seed)
    terms = simsiam_loss_terms(p1, p2, z1, z2, margin)
    expected, active = reference_floored_loss(p1, p2, z1, z2, [margin] * 16)
    assert float(terms.loss.detach()) == pytest.approx(expected, abs=1e-9)
    assert float(terms.floor_active) == pytest.approx(active)


@given(seed=st.integers(0, 10_000))
def test_per_sample_margin_matches_reference(seed):
    p1, p2, z1, z2 = random_outputs(seed)
    margins = (
        torch.rand(16, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64) * 2
    )
    terms = simsiam_loss_terms(p1, p2, z1, z2, margins)
    expected, active = reference_floored_loss(p1, p2, z1, z2, margins)
    assert float(terms.loss.detach()) == pytest.approx(expected, abs=1e-9)
    assert float(terms.floor_active) == pytest.approx(active)


def test_no_gradient_reaches_z():
    p1, p2, z1, z2 = random_outputs(0)
    simsiam_loss(p1, p2, z1, z2, 0.5).backward()
    assert z1.grad is None and z2.grad is None
    assert p1.grad is not None and p1.grad.abs().sum() > 0


def test_no_gradient_through_active_floor():
    p1, p2, z1, z2 = random_outputs(1, requires_grad=False)
    aligned = z2.clone()
    aligned[:8] = p1[:8]  # cos = 1 for the first half: -cos = -1 sits under any positive floor
    p1 = p1.clone().requires_grad_(True)
    terms = simsiam_loss_terms(p1, p2, z1, aligned, margin=0.3)
    terms.loss.backward()
    per_sample_grad = p1.grad.abs().sum(dim=1)
    assert (per_sample_grad[:8] == 0).all()
    assert (per_sample_grad[8:] > 0).all()
    assert float(terms.floor_active) >= 8 / 32


def test_margin_none_never_reports_an_active_floor():
    p1, p2, z1, z2 = random_outputs(2)
    assert float(simsiam_loss_terms(p1, p1, p1, p1).floor_active) == 0.0
    assert float(simsiam_loss_terms(p1, p2, z1, z2).floor_active) == 0.0


def test_distance_margin_is_k_times_phi():
    phi = torch.tensor([0.0, 0.25, 0.5])
    assert torch.equal(distance_margin(phi, 0.8), torch.tensor([0.0, 0.2, 0.4]))


def test_normalized_std_detects_collapse():
    healthy = torch.randn(4096, 64, generator=torch.Generator().manual_seed(0))
    assert float(normalized_std(healthy)) == pytest.approx(1 / 64**0.5, rel=0.05)
    collapsed = torch.ones(256, 64) + 1e-6 * torch.randn(256, 64)
    assert float(normalized_std(collapsed)) < 1e-5
    assert torch.allclose(normalized_std(healthy * 7), normalized_std(F.normalize(healthy, dim=1)))


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 64), st.integers(2, 128), st.integers(0, 2**16))
def test_normalized_std_never_exceeds_one_over_sqrt_d(batch, dim, seed):
    z = torch.randn(batch, dim, generator=torch.Generator().manual_seed(seed)) * 10 + 3
    assert float(normalized_std(z)) <= (1 / dim**0.5) * (1 + 1e-5)
