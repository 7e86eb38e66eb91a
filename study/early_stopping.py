"""Is early stopping safe for a sweep? How well each ASHA rung's ranking predicts the final one.

At each rung epoch below the last (``grace_period * reduction_factor**i``), Spearman's rank
correlation between the trials' ``knn_top1`` at that epoch and their final ``knn_top1``, over the
trials that ran every epoch. With ASHA those are the survivors; a grid (no early stopping by
default) runs every trial to the end, so its check covers every trial and says whether ASHA would
have been safe there. A correlation at the grace period below :data:`SAFE_CORRELATION`, or one
that cannot be computed (fewer than 3 finished trials), is a warning. :func:`check_early_stopping`
is pure; the sweep driver logs its result to the parent MLflow run
(:func:`summary_metrics`, :func:`rung_tag`) and the report shows it
(:mod:`dashboards.early_stopping`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from study.config import Asha
from study.statistics import MIN_RANKED, Correlation, spearman
from study.vocabulary import (
    EPOCH,
    RANK_CORRELATION_METRIC,
    RANK_CORRELATION_TRIALS_METRIC,
    SCORE,
    Outcome,
)

SAFE_CORRELATION = 0.5


@dataclass(frozen=True)
class RungCorrelation:
    epoch: int
    correlation: Correlation


@dataclass(frozen=True)
class EarlyStoppingCheck:
    """The rank correlations at each rung over the ``finished`` trials; ``on``: ASHA stopped
    trials."""

    on: bool
    asha: Asha
    finished: int
    rungs: tuple[RungCorrelation, ...]

    @property
    def at_grace(self) -> Correlation | None:
        return self.rungs[0].correlation if self.rungs else None

    def warning(self) -> str | None:
        """Why the ranking at the grace period is no safe basis for stopping trials, if it is
        not."""
        grace = self.at_grace
        if grace is None:
            return None
        epoch = self.rungs[0].epoch
        if not grace.defined:
            why = (
                f"only {grace.count} trial{'s' if grace.count != 1 else ''} ran every epoch (needs "
                f"{MIN_RANKED})"
                if grace.count < MIN_RANKED
                else "the scores are all tied"
            )
            return (
                f"The rank correlation at the grace period (epoch {epoch}) cannot be computed: "
                f"{why}."
            )
        if grace.rho < SAFE_CORRELATION:
            return (
                f"The ranking at the grace period (epoch {epoch}) agrees poorly with the final "
                f"ranking (Spearman ρ = {grace.rho:.2f} < {SAFE_CORRELATION}): ASHA may stop "
                "trials that would have ended best; "
                "consider a longer --grace-period."
            )
        return None


def check_early_stopping(
    trials: pd.DataFrame, epochs: pd.DataFrame, asha: Asha, on: bool
) -> EarlyStoppingCheck:
    """The check over ``trials`` (``trial_id``, ``status``) and their ``epochs`` (``trial_id``,
    ``epoch``, ``knn_top1``): rungs ``asha.rungs``, final scores at each finished trial's last
    epoch."""
    finished = set(trials.loc[trials["status"] == Outcome.FINISHED, "trial_id"])
    history = epochs[epochs["trial_id"].isin(finished)].dropna(subset=[SCORE]).sort_values(EPOCH)
    final = history.groupby("trial_id")[SCORE].last()
    rungs = []
    for epoch in asha.rungs:
        at_rung = history[history[EPOCH] == epoch].groupby("trial_id")[SCORE].last()
        paired = pd.concat([at_rung.rename("rung"), final.rename("final")], axis=1, join="inner")
        rungs.append(
            RungCorrelation(epoch, spearman(paired["rung"].to_numpy(), paired["final"].to_numpy()))
        )
    return EarlyStoppingCheck(on, asha, len(final), tuple(rungs))


def rung_tag(check: EarlyStoppingCheck) -> str:
    """The rung epochs, comma-separated (``none`` without a rung below the last epoch)."""
    return ",".join(str(rung.epoch) for rung in check.rungs) or "none"


def summary_metrics(check: EarlyStoppingCheck) -> dict[str, float]:
    """The parent run's metrics of the check (the correlation only where it can be computed)."""
    metrics = {RANK_CORRELATION_TRIALS_METRIC: float(check.finished)}
    if check.at_grace is not None and check.at_grace.defined:
        metrics[RANK_CORRELATION_METRIC] = check.at_grace.rho
    return metrics
