"""Is early stopping safe for a sweep? How well each ASHA rung's ranking predicts the final one.

At each rung epoch below the last (``grace_period * reduction_factor**i``), Spearman's rank
correlation between the trials' ``knn_top1`` at that epoch and their final ``knn_top1``, over the
trials that ran every epoch. With ASHA those are the survivors; a grid (no early stopping by
default) runs every trial to the end, so its check covers every trial and says whether ASHA would
have been safe there. A correlation at the grace period below :data:`SAFE_CORRELATION`, or one
that cannot be computed (fewer than 3 finished trials), is a warning. :func:`check_early_stopping`
is pure; the sweep driver logs its result to the parent MLflow run and the report shows it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import pandas as pd

from dashboards.statistics import MIN_RANKED, Correlation, spearman
from dashboards.sweeps import FINISHED, SweepData
from study.config import Asha
from study.layout import RANK_CORRELATION_METRIC, RANK_CORRELATION_TRIALS_METRIC

SAFE_CORRELATION = 0.5
SCORE = "knn_top1"


@dataclass(frozen=True)
class RungCorrelation:
    epoch: int
    correlation: Correlation


@dataclass(frozen=True)
class EarlyStoppingCheck:
    """The rank correlations at each rung over the ``finished`` trials; ``on``: ASHA stopped trials."""

    on: bool
    asha: Asha
    finished: int
    rungs: tuple[RungCorrelation, ...]

    @property
    def at_grace(self) -> Correlation | None:
        return self.rungs[0].correlation if self.rungs else None

    def warning(self) -> str | None:
        """Why the ranking at the grace period is no safe basis for stopping trials, if it is not."""
        grace = self.at_grace
        if grace is None:
            return None
        epoch = self.rungs[0].epoch
        if not grace.defined:
            why = (f"only {grace.count} trial{'s' if grace.count != 1 else ''} ran every epoch (needs {MIN_RANKED})"
                   if grace.count < MIN_RANKED else "the scores are all tied")
            return f"The rank correlation at the grace period (epoch {epoch}) cannot be computed: {why}."
        if grace.rho < SAFE_CORRELATION:
            return (f"The ranking at the grace period (epoch {epoch}) agrees poorly with the final ranking "
                    f"(Spearman ρ = {grace.rho:.2f} < {SAFE_CORRELATION}): ASHA may stop trials that would have ended best; "
                    "consider a longer --grace-period.")
        return None


def check_early_stopping(trials: pd.DataFrame, epochs: pd.DataFrame, asha: Asha, on: bool) -> EarlyStoppingCheck:
    """The check over ``trials`` (``trial_id``, ``status``) and their ``epochs`` (``trial_id``,
    ``epoch``, ``knn_top1``): rungs ``asha.rungs``, final scores at each finished trial's last epoch."""
    finished = set(trials.loc[trials["status"] == FINISHED, "trial_id"])
    history = epochs[epochs["trial_id"].isin(finished)].dropna(subset=[SCORE]).sort_values("epoch")
    final = history.groupby("trial_id")[SCORE].last()
    rungs = []
    for epoch in asha.rungs:
        at_rung = history[history["epoch"] == epoch].groupby("trial_id")[SCORE].last()
        paired = pd.concat([at_rung.rename("rung"), final.rename("final")], axis=1, join="inner")
        rungs.append(RungCorrelation(epoch, spearman(paired["rung"].to_numpy(), paired["final"].to_numpy())))
    return EarlyStoppingCheck(on, asha, len(final), tuple(rungs))


def settings_of(sweep: SweepData) -> tuple[Asha, bool]:
    """The sweep's ASHA settings and whether they were on, from its state (a sweep recorded
    before early stopping could be turned off always ran ASHA)."""
    state, config = sweep.state, sweep.state.get("config", {})
    if "asha" in state:
        recorded = state["asha"]
        return Asha(int(recorded["grace_period"]), int(recorded["reduction_factor"]), int(recorded["max_t"])), bool(state.get("early_stopping"))
    grace = min(int(config.get("grace_period", 1)), sweep.max_epochs)
    return Asha(grace, int(config.get("reduction_factor", 2)), sweep.max_epochs), True


def sweep_check(sweep: SweepData) -> EarlyStoppingCheck:
    """The check over the sweep's own trials (not those of sweeps drawn alongside in a report)."""
    trials = sweep.trials[sweep.trials["sweep"] == sweep.name] if "sweep" in sweep.trials else sweep.trials
    return check_early_stopping(trials, sweep.epochs, *settings_of(sweep))


def _rows(check: EarlyStoppingCheck) -> str:
    cells = "".join(
        f'<tr class="rung" data-epoch="{rung.epoch}"><td>{rung.epoch}</td><td>{rung.correlation.count}</td>'
        f"<td>{f'{rung.correlation.rho:.3f}' if rung.correlation.defined else 'cannot be computed'}</td></tr>"
        for rung in check.rungs
    )
    return f"<table id=\"rank-correlations\"><thead><tr><th>rung epoch</th><th>trials</th><th>Spearman ρ with the final knn_top1</th></tr></thead><tbody>{cells}</tbody></table>"


def early_stopping_html(sweep: SweepData) -> str:
    """The report's section: what stopped trials, and how well the rungs' rankings hold."""
    check = sweep_check(sweep)
    asha = check.asha
    settings = f"grace period {asha.grace_period}, reduction factor {asha.reduction_factor}"
    name = f"<code>{html.escape(sweep.name)}</code>"
    if check.on:
        what = f"<p>ASHA stopped trials early in sweep {name} ({settings}).</p>"
        none = f"<p>The grace period is not below the {asha.max_t} epochs: ASHA had no rung to stop trials at.</p>"
        over = f"Over the {check.finished} trials that ran all {asha.max_t} epochs (those ASHA stopped are not among them)"
    else:
        what = (f"<p>Sweep {name} ran every trial to the last epoch: no early stopping (a grid's default; "
                f"<code>--early-stopping</code> turns ASHA on).</p>")
        none = f"<p>With {settings} ASHA would have had no rung below the {asha.max_t} epochs: nothing to check.</p>"
        over = (f"Had ASHA run ({settings}), it would have ranked the trials at the rungs below; over all "
                f"{check.finished} trials that ran all {asha.max_t} epochs")
    if not check.rungs:
        return what + none
    warning = check.warning()
    verdict = (f'<p class="missing" id="early-stopping-warning"><b>Warning</b>: {html.escape(warning)}</p>' if warning else
               f'<p id="early-stopping-safe">The ranking at the grace period agrees with the final one (ρ ≥ {SAFE_CORRELATION}).</p>')
    return f"{what}<p>{over}, the rank correlation of each rung's knn_top1 with the final knn_top1:</p>{_rows(check)}{verdict}"


def rung_tag(check: EarlyStoppingCheck) -> str:
    """The rung epochs, comma-separated (``none`` without a rung below the last epoch)."""
    return ",".join(str(rung.epoch) for rung in check.rungs) or "none"


def summary_metrics(check: EarlyStoppingCheck) -> dict[str, float]:
    """The parent run's metrics of the check (the correlation only where it can be computed)."""
    metrics = {RANK_CORRELATION_TRIALS_METRIC: float(check.finished)}
    if check.at_grace is not None and check.at_grace.defined:
        metrics[RANK_CORRELATION_METRIC] = check.at_grace.rho
    return metrics



def stopping_text(sweep: SweepData) -> str:
    """How the sweep's trials were stopped, for the report's space summary."""
    asha, on = settings_of(sweep)
    if on:
        return f"ASHA early stopping (grace period {asha.grace_period}, reduction factor {asha.reduction_factor})"
    return "no early stopping: every trial runs to the last epoch"
