"""A sweep's best trial, defined once for the CLI, the MLflow tags, the Parquet tables, the
sweep's record and the report.

The best trial is the one with the highest **final** kNN top-1 among the trials that ran every
epoch (outcome FINISHED): a trial ASHA stopped at epoch 2 is not compared with one trained to the
end, and an accuracy a trial reached on the way but did not keep is not its result. Only when no
trial ran every epoch is the best the highest kNN top-1 any trial reached at any epoch, and the
record says so (``ran_every_epoch=False``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from study.vocabulary import BEST_SCORE, FINAL_SCORE, Outcome

FINISHED_RULE = "highest final knn_top1 among the trials that ran every epoch"
FALLBACK_RULE = "no trial ran every epoch: highest knn_top1 of any trial at any epoch"


@dataclass(frozen=True)
class BestTrial:
    trial_id: str
    knn_top1: float
    ran_every_epoch: bool
    """False: no trial ran every epoch, and ``knn_top1`` is the best epoch's, not the last's."""

    @property
    def rule(self) -> str:
        return FINISHED_RULE if self.ran_every_epoch else FALLBACK_RULE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BestTrial:
        return cls(str(data["trial_id"]), float(data["knn_top1"]), bool(data["ran_every_epoch"]))


def _score(row: Mapping[str, Any], column: str) -> float | None:
    value = row.get(column)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def best_trial(trials: Iterable[Mapping[str, Any]]) -> BestTrial | None:
    """The best of ``trials``: rows with ``trial_id``, ``status`` (an :class:`Outcome`),
    ``final_knn_top1`` and ``best_knn_top1``, as in ``trials.parquet`` or the report's table.
    None when no trial reported a kNN accuracy."""
    rows = list(trials)
    finished = [
        (score, row)
        for row in rows
        if row.get("status") == Outcome.FINISHED and (score := _score(row, FINAL_SCORE)) is not None
    ]
    if finished:
        score, row = max(finished, key=lambda pair: pair[0])
        return BestTrial(str(row["trial_id"]), score, ran_every_epoch=True)
    reached = [(score, row) for row in rows if (score := _score(row, BEST_SCORE)) is not None]
    if not reached:
        return None
    score, row = max(reached, key=lambda pair: pair[0])
    return BestTrial(str(row["trial_id"]), score, ran_every_epoch=False)
