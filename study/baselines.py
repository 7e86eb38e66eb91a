"""A sweep's baselines (:mod:`trainables.baselines`), computed once when it starts.

Before the first trial, one Ray task (1 CPU, and a trial worker's GPU share when trials use
GPUs) computes the untrained encoder of every seed the sweep trains and the raw pixels, on the
sweep's eval set. They are written to ``results/baselines.parquet``, kept in the sweep's state
and :class:`~study.lifecycle.StudyResult`, and logged to the parent MLflow run through the outbox
(``untrained_knn_top1`` at step = seed, ``untrained_knn_top1_mean``, ``pixels_knn_top1``). A
resumed sweep reads them back from the Parquet table instead of computing them again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import ray

from search_spaces.common import SEED
from study.config import StudyConfig, StudyPlan
from study.outbox import Outbox
from study.vocabulary import (
    BASELINES_FILE,
    PIXELS_METRIC,
    RESULTS_DIR,
    UNTRAINED_MEAN_METRIC,
    UNTRAINED_METRIC,
)
from trainables.baselines import COLUMNS, Baselines, sweep_baselines

SCHEMA = pa.schema(
    [
        ("baseline", pa.string()),
        ("seed", pa.int64()),
        ("knn_top1", pa.float64()),
        ("knn_top5", pa.float64()),
        ("eval_dataset", pa.string()),
        ("k", pa.int64()),
        ("size", pa.int64()),
        ("eval_limit", pa.int64()),
    ]
)
assert tuple(SCHEMA.names) == COLUMNS, "one column per BaselineScore field"


def sweep_seeds(study_plan: StudyPlan) -> tuple[int, ...]:
    """The seeds the sweep's trials train with: a grid's points' (else the base config's), or a
    search's constant seed."""
    base_seed = study_plan.base_config.seed
    if study_plan.points:
        return tuple(sorted({int(point.get(SEED, base_seed)) for point in study_plan.points}))
    return (int(getattr(study_plan.define, "constants", {}).get(SEED, base_seed)),)


def task_gpus(config: StudyConfig) -> float:
    """A trial worker's GPU share (0 when trials run on CPUs)."""
    return (config.gpus_per_trial or 0.0) / config.workers_per_trial


def compute_on_cluster(study_plan: StudyPlan, config: StudyConfig) -> Baselines:
    """The sweep's baselines, computed by one task on the cluster (never on the driver)."""
    task = ray.remote(sweep_baselines).options(
        num_cpus=1, num_gpus=task_gpus(config), name="sweep_baselines"
    )
    return ray.get(task.remote(study_plan.base_config, sweep_seeds(study_plan)))


def baselines_path(directory: Path) -> Path:
    return directory / RESULTS_DIR / BASELINES_FILE


def write_baselines(baselines: Baselines, directory: Path) -> Path:
    """``results/baselines.parquet``, written atomically."""
    path = baselines_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    pq.write_table(pa.Table.from_pylist(baselines.rows(), schema=SCHEMA), partial)
    partial.replace(path)
    return path


def read_baselines(directory: Path) -> Baselines | None:
    """The stored baselines; None when the sweep has none yet."""
    path = baselines_path(directory)
    return Baselines.from_rows(pq.read_table(path).to_pylist()) if path.is_file() else None


def metric_points(baselines: Baselines) -> list[list[Any]]:
    """``[metric, value, step]`` of the parent run: the untrained encoder at step = seed."""
    points: list[list[Any]] = [
        [UNTRAINED_METRIC, value, seed] for seed, value in baselines.untrained.items()
    ]
    if baselines.untrained_mean is not None:
        points.append([UNTRAINED_MEAN_METRIC, baselines.untrained_mean, 0])
    if baselines.pixels is not None:
        points.append([PIXELS_METRIC, baselines.pixels, 0])
    return points


def ensure_baselines(
    study_plan: StudyPlan, config: StudyConfig, directory: Path, outbox: Outbox
) -> Baselines:
    """The sweep's baselines: read back if stored, else computed, stored and logged."""
    baselines = read_baselines(directory)
    if baselines is None:
        baselines = compute_on_cluster(study_plan, config)
        path = write_baselines(baselines, directory)
        outbox.submit("points", points=metric_points(baselines), timestamp=int(time.time() * 1000))
        outbox.submit("artifacts", paths=[str(path)], artifact_path=RESULTS_DIR)
    return baselines
