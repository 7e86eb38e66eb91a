"""The realised geometry of the views a run trained on: per-epoch means and cumulative histograms.

Per pair: ``overlap`` (shared area over image area), ``distance`` (centre distance in source
pixels) and ``phi`` (centre distance over the image diagonal); per view: ``crop_area`` (its
box's area over the image area) and ``crop_aspect`` (its box's width over height in source
pixels). Each epoch logs their means and standard deviations; the histograms, carried across
resumes in ``view_stats.json``, hold every pair and view trained on so far.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from trainables.metrics import (  # noqa: F401 (VIEW_STATS_FILE, REALISED_METRICS: re-exported)
    IMAGES_PER_S,
    LOGGED_STATS,
    PAIR_STATS,
    REALISED_METRICS,
    VIEW_STATS_FILE,
    VIEW_STATS_PER_VIEW,
)
from trainables.views import ViewGeometry
from trainables.views.boxes import box_height, box_width

VIEW_STAT_BINS = 20
EDGE_TOLERANCE = 1e-9
ASPECT_LOG2_RANGE = (-2.0, 2.0)
"""The aspect histogram's bins are equal in log2 over 1/4 to 4; wider boxes fall in the end bins."""


@dataclass(frozen=True)
class HistogramAxis:
    """A histogram's bins: equal steps of ``value`` (or of its log2) from ``low`` to ``high``."""

    low: float = 0.0
    high: float = 1.0
    log2: bool = False

    def edges(self, bins: int) -> list[float]:
        steps = [self.low + (self.high - self.low) * index / bins for index in range(bins + 1)]
        return [2.0**step for step in steps] if self.log2 else steps

    def counts(self, values: Tensor, bins: int) -> Tensor:
        """int64 counts; values outside the axis count in the end bins. A value within 1e-9 of a
        bin edge counts in the bin above it, so an overlap of exactly 0.3 (realised as
        0.29999999999999993) lands in [0.30, 0.35)."""
        position = values.double().log2() if self.log2 else values.double()
        unit = ((position - self.low) / (self.high - self.low)).clamp(0, 1)
        index = (unit * bins + EDGE_TOLERANCE).floor().long().clamp(max=bins - 1)
        return torch.bincount(index, minlength=bins)


HISTOGRAMS = {
    "overlap": HistogramAxis(),
    "phi": HistogramAxis(),
    "crop_area": HistogramAxis(),
    "crop_aspect": HistogramAxis(*ASPECT_LOG2_RANGE, log2=True),
}
"""The histogrammed statistics, each on its own axis; all but the aspect lie in [0, 1]."""


def unit_histogram(values: Tensor, bins: int = VIEW_STAT_BINS) -> Tensor:
    """int64 counts of ``values`` in ``bins`` equal bins of [0, 1]; 1.0 falls in the last bin."""
    return HistogramAxis().counts(values, bins)


def realised_values(geometry: ViewGeometry) -> dict[str, Tensor]:
    """Every statistic of a batch of geometries: pair statistics ``(B,)``, view ones ``(2B,)``."""
    return {
        "overlap": geometry.overlap,
        "distance": geometry.distance,
        "phi": geometry.phi,
        "crop_area": geometry.view_areas.flatten(),
        "crop_aspect": (box_width(geometry.boxes) / box_height(geometry.boxes)).flatten(),
    }


class EpochStats:
    """Running means of per-step losses and the realised geometry of one epoch. Step values stay
    on the training device until the epoch ends, so a step never waits for the host."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.steps = 0
        self.images = 0
        self.realised: dict[str, list[Tensor]] = {name: [] for name in LOGGED_STATS}

    def add_step(self, values: dict[str, Tensor], geometry: ViewGeometry) -> None:
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0) + value.detach()
        self.steps += 1
        self.images += len(geometry)
        for name, realised in realised_values(geometry).items():
            self.realised[name].append(realised)

    def _values(self, name: str) -> Tensor:
        parts = self.realised[name]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)

    def metrics(self, seconds: float) -> dict[str, float]:
        metrics = {name: float(total) / max(self.steps, 1) for name, total in self.sums.items()}
        for name in LOGGED_STATS:
            values = self._values(name)
            metrics[f"{name}_mean"] = float(values.mean()) if len(values) else math.nan
            metrics[f"{name}_std"] = float(values.std()) if len(values) > 1 else 0.0
        metrics[IMAGES_PER_S] = self.images / max(seconds, 1e-9)
        return metrics

    def histograms(self, bins: int = VIEW_STAT_BINS) -> dict[str, Tensor]:
        return {name: axis.counts(self._values(name), bins) for name, axis in HISTOGRAMS.items()}


@dataclass
class ViewHistograms:
    """Counts of the realised geometry of every pair trained on so far (rank 0's shard under
    DDP), carried across resumes in each checkpoint's ``view_stats.json``."""

    counts: dict[str, Tensor]
    epochs: int = 0

    @classmethod
    def empty(cls, bins: int = VIEW_STAT_BINS) -> ViewHistograms:
        return cls({name: torch.zeros(bins, dtype=torch.int64) for name in HISTOGRAMS})

    @property
    def bins(self) -> int:
        return len(self.counts["overlap"])

    def add_epoch(self, epoch_counts: dict[str, Tensor]) -> None:
        for name in HISTOGRAMS:
            self.counts[name] = self.counts[name] + epoch_counts[name]
        self.epochs += 1

    def to_json(self) -> dict:
        return {
            "bin_edges": HistogramAxis().edges(self.bins),
            "crop_aspect_bin_edges": HISTOGRAMS["crop_aspect"].edges(self.bins),
            "epochs": self.epochs,
            **{name: self.counts[name].tolist() for name in HISTOGRAMS},
        }

    @classmethod
    def from_json(cls, data: dict) -> ViewHistograms:
        """Histograms from ``view_stats.json``; files written before the crop statistics were
        recorded read as empty crop histograms."""
        bins = len(data["overlap"])
        counts = {
            name: torch.tensor(data.get(name, [0] * bins), dtype=torch.int64) for name in HISTOGRAMS
        }
        return cls(counts, int(data["epochs"]))

    def save(self, directory: Path) -> Path:
        path = directory / VIEW_STATS_FILE
        path.write_text(json.dumps(self.to_json()))
        return path

    @classmethod
    def load(cls, directory: Path | str | None) -> ViewHistograms:
        """The histograms saved beside a checkpoint; empty when there are none (a fresh run, or
        a checkpoint written before histograms were recorded)."""
        path = None if directory is None else Path(directory) / VIEW_STATS_FILE
        return (
            cls.from_json(json.loads(path.read_text()))
            if path is not None and path.is_file()
            else cls.empty()
        )
