"""The report's early-stopping section: what stopped a sweep's trials, and how well each ASHA
rung's ranking agrees with the final one (:func:`study.early_stopping.check_early_stopping`, over
the sweep's own trials and its recorded ASHA settings).
"""

from __future__ import annotations

import html

from dashboards.sweeps import SweepData
from study.config import Asha
from study.early_stopping import SAFE_CORRELATION, EarlyStoppingCheck, check_early_stopping


def settings_of(sweep: SweepData) -> tuple[Asha, bool]:
    """The sweep's ASHA settings and whether they were on, from its state (a sweep recorded
    before early stopping could be turned off always ran ASHA)."""
    if sweep.state is None:
        return Asha(1, 2, sweep.max_epochs), True
    return sweep.state.asha, sweep.state.early_stopping


def sweep_check(sweep: SweepData) -> EarlyStoppingCheck:
    """The check over the sweep's own trials (not those of sweeps drawn alongside in a report)."""
    trials = (
        sweep.trials[sweep.trials["sweep"] == sweep.name]
        if "sweep" in sweep.trials
        else sweep.trials
    )
    return check_early_stopping(trials, sweep.epochs, *settings_of(sweep))


def _rows(check: EarlyStoppingCheck) -> str:
    cells = "".join(
        f'<tr class="rung" data-epoch="{rung.epoch}">'
        f"<td>{rung.epoch}</td><td>{rung.correlation.count}</td>"
        f"<td>{f'{rung.correlation.rho:.3f}' if rung.correlation.defined else 'cannot be computed'}"
        "</td></tr>"
        for rung in check.rungs
    )
    return (
        '<table id="rank-correlations"><thead><tr><th>rung epoch</th><th>trials</th>'
        "<th>Spearman ρ with the final knn_top1</th></tr></thead>"
        f"<tbody>{cells}</tbody></table>"
    )


def early_stopping_html(sweep: SweepData) -> str:
    """The report's section: what stopped trials, and how well the rungs' rankings hold."""
    check = sweep_check(sweep)
    asha = check.asha
    settings = f"grace period {asha.grace_period}, reduction factor {asha.reduction_factor}"
    name = f"<code>{html.escape(sweep.name)}</code>"
    if check.on:
        what = f"<p>ASHA stopped trials early in sweep {name} ({settings}).</p>"
        none = (
            f"<p>The grace period is not below the {asha.max_t} epochs: "
            "ASHA had no rung to stop trials at.</p>"
        )
        over = (
            f"Over the {check.finished} trials that ran all {asha.max_t} epochs "
            "(those ASHA stopped are not among them)"
        )
    else:
        what = (
            f"<p>Sweep {name} ran every trial to the last epoch: "
            "no early stopping (a grid's default; "
            f"<code>--early-stopping</code> turns ASHA on).</p>"
        )
        none = (
            f"<p>With {settings} ASHA would have had no rung below the {asha.max_t} epochs: "
            "nothing to check.</p>"
        )
        over = (
            f"Had ASHA run ({settings}), it would have ranked the trials at the rungs below; "
            "over all "
            f"{check.finished} trials that ran all {asha.max_t} epochs"
        )
    if not check.rungs:
        return what + none
    warning = check.warning()
    verdict = (
        (
            '<p class="missing" id="early-stopping-warning"><b>Warning</b>: '
            f"{html.escape(warning)}</p>"
        )
        if warning
        else (
            '<p id="early-stopping-safe">The ranking at the grace period agrees with the final one '
            f"(ρ ≥ {SAFE_CORRELATION}).</p>"
        )
    )
    return (
        f"{what}<p>{over}, the rank correlation of each rung's knn_top1 "
        f"with the final knn_top1:</p>{_rows(check)}{verdict}"
    )


def stopping_text(sweep: SweepData) -> str:
    """How the sweep's trials were stopped, for the report's space summary."""
    asha, on = settings_of(sweep)
    if on:
        return (
            f"ASHA early stopping (grace period {asha.grace_period}, "
            f"reduction factor {asha.reduction_factor})"
        )
    return "no early stopping: every trial runs to the last epoch"
