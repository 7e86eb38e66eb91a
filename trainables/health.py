"""When a training run stops itself instead of burning its remaining epochs.

A run **diverged** when an epoch's mean loss is not finite (NaN or Inf): it stops after that
epoch. A run **collapsed** when its outputs stop varying: ``z_std``, the per-dimension std of
the L2-normalised projector outputs (:func:`trainables.loss.normalized_std`), is about
``1 / sqrt(d)`` for healthy SimSiam outputs of dimension ``d`` and 0 at collapse; the run stops
once ``z_std * sqrt(d)`` stays under ``collapse_ratio`` for ``collapse_epochs`` epochs in a row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trainables.validation import check_range

DIVERGED, COLLAPSED = "diverged", "collapsed"
STOP_REASONS = (DIVERGED, COLLAPSED)
STOP_REASON_KEY = "stop_reason"
"""The metrics key of the last epoch of a run that stopped itself: ``"diverged: ..."``."""


@dataclass(frozen=True)
class HealthConfig:
    """``collapse_epochs = 0`` turns the collapse check off; divergence always stops a run."""

    collapse_ratio: float = 0.1
    collapse_epochs: int = 3

    def __post_init__(self) -> None:
        check_range("health.collapse_ratio", self.collapse_ratio, 0, 1, low_open=True)
        check_range("health.collapse_epochs", self.collapse_epochs, 0, integer=True)


def stop_reason(
    history: Sequence[dict[str, Any]], output_dim: int, config: HealthConfig
) -> str | None:
    """Why a run whose epochs so far are ``history`` should stop now, or None to go on."""
    if not history:
        return None
    last = history[-1]
    loss = last.get("loss", float("nan"))
    if not math.isfinite(loss):
        return f"{DIVERGED}: loss is {loss} at epoch {last.get('epoch', len(history))}"
    if config.collapse_epochs == 0 or len(history) < config.collapse_epochs:
        return None
    threshold = config.collapse_ratio / math.sqrt(output_dim)
    recent = history[-config.collapse_epochs :]
    if all(epoch.get("z_std", math.inf) < threshold for epoch in recent):
        epochs = [epoch.get("epoch") for epoch in recent]
        return (
            f"{COLLAPSED}: z_std stayed under {threshold:.3g} "
            f"({config.collapse_ratio:g} / sqrt({output_dim})) "
            f"for {config.collapse_epochs} epochs ({epochs[0]}-{epochs[-1]}); "
            f"last {recent[-1]['z_std']:.3g}"
        )
    return None


def reason_kind(reason: str | None) -> str | None:
    """``"diverged"`` or ``"collapsed"`` from a stop reason."""
    return None if not reason else reason.split(":", 1)[0]
