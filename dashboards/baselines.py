"""The report's Baselines section: the untrained encoder and the raw pixels on the sweep's eval
set (:mod:`trainables.baselines`), and how far the best trial is above each."""

from __future__ import annotations

import html

import pandas as pd

from dashboards.sweeps import SweepData
from trainables.baselines import Baselines, describe


def _integer(value) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def setting_of(trial: pd.Series) -> tuple:
    """A trial's evaluation setting, as :attr:`trainables.baselines.BaselineScore.setting`."""
    return (
        trial.get("data.eval_dataset"),
        _integer(trial.get("views.size")),
        _integer(trial.get("knn.k")),
        _integer(trial.get("data.eval_limit")),
    )


def best_margins(baselines: Baselines, best: pd.Series | None, score: str) -> str:
    """:func:`~trainables.baselines.describe` of the baselines measured like ``best`` (the
    trial's ``score`` against its own seed's untrained encoder and the mean over seeds)."""
    if best is None:
        return describe(baselines)
    own = baselines.by_setting().get(setting_of(best), baselines)
    return describe(own, float(best[score]), _integer(best.get("seed")))


def baselines_html(sweep: SweepData, best: pd.Series | None, score: str) -> str:
    if not sweep.baselines:
        return (
            "<p>No baselines were recorded for this sweep (it ran before sweeps computed them).</p>"
        )
    return (
        '<p id="baselines">kNN top-1 on the evaluation set: '
        f"{html.escape(best_margins(sweep.baselines, best, score))}.</p>"
        "<p>The untrained encoder is the network each trial starts from (its seed); "
        "raw pixels are the evaluation views, normalised and flattened, with the same k "
        "and temperature. A trial learned something only above both.</p>"
    )
