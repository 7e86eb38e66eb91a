"""The SimSiam loss with an optional floor ``-1 + m`` on each term (the paper's Eq. 1)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class LossTerms(NamedTuple):
    loss: Tensor
    """``0.5 * (mean term(1, 2) + mean term(2, 1))``, differentiable in ``p``."""
    floor_active: Tensor
    """Fraction of the ``2B`` terms held at their floor (no gradient flows through them)."""


def negative_cosine(p: Tensor, z: Tensor) -> Tensor:
    """``-cos(p, stopgrad(z))`` per sample, shape ``(B,)``."""
    return -F.cosine_similarity(p, z.detach(), dim=-1)


def floored(term: Tensor, margin: Tensor | float | None) -> tuple[Tensor, Tensor]:
    """``max(term, -1 + margin)``, with no gradient where the floor is active; and that mask."""
    if margin is None:
        return term, torch.zeros_like(term, dtype=torch.bool)
    floor = torch.as_tensor(margin, dtype=term.dtype, device=term.device) - 1
    active = term <= floor
    return torch.where(active, floor.expand_as(term), term), active


def simsiam_loss_terms(
    p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor, margin: Tensor | float | None = None
) -> LossTerms:
    """SimSiam's symmetric loss with each term floored at ``-1 + margin``.

    ``margin`` is None (the official loss), a float, or a ``(B,)`` tensor (e.g. ``k * phi``).
    """
    term_12, active_12 = floored(negative_cosine(p1, z2), margin)
    term_21, active_21 = floored(negative_cosine(p2, z1), margin)
    loss = 0.5 * (term_12.mean() + term_21.mean())
    floor_active = torch.cat((active_12, active_21)).float().mean()
    return LossTerms(loss, floor_active)


def simsiam_loss(
    p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor, margin: Tensor | float | None = None
) -> Tensor:
    return simsiam_loss_terms(p1, p2, z1, z2, margin).loss


def normalized_std(z: Tensor) -> Tensor:
    """Per-dimension std of L2-normalised ``z`` over the batch, averaged over dimensions.

    About ``1 / sqrt(d)`` for healthy SimSiam outputs, and 0 when they collapse to a constant.
    Never above ``1 / sqrt(d)``: the population variances of a unit vector's ``d`` coordinates
    sum to at most 1.
    """
    return F.normalize(z.detach().float(), dim=-1).std(dim=0, unbiased=False).mean()


MARGIN_MODES = ("none", "fixed", "distance")


def distance_margin(phi: Tensor, k: float) -> Tensor:
    """The paper's distance-based margin ``m = k * phi``, with ``phi`` the centre distance of the
    two views over the image diagonal, so that ``k`` does not depend on resolution."""
    return k * phi
