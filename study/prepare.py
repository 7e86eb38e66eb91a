"""Every check of a sweep that needs no cluster, made before Ray starts: the configs, the sweep's
name (refused, resumed or overwritten), the data, the tracking store and, on a local run, the
GPUs. A check that fails raises :class:`~trainables.validation.ConfigError`; nothing is started
or written, and an overwritten sweep's directory is only ever set aside, never deleted."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import ray

from study.cluster import cluster_address
from study.config import StudyConfig, StudyPlan, plan
from study.layout import resolve_tracking_uri
from study.state import read_state
from study.storage import SweepStorage
from study.tracking import check_tracking_store
from study.tuner import check_gpus, local_gpus
from study.vocabulary import REPLACED_DIR, STATE_FILE
from trainables.config import BANK_SPLIT, QUERY_SPLIT
from trainables.data import DATASETS, default_data_root, get_dataset
from trainables.validation import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """A sweep checked against everything knowable before Ray starts."""

    config: StudyConfig
    plan: StudyPlan
    storage: SweepStorage
    directory: Path
    exists: bool
    tracking_uri: str
    local: bool


def with_data_root(config: StudyConfig, study_plan: StudyPlan) -> tuple[StudyConfig, StudyPlan]:
    """``config`` and its plan with ``data.root`` resolved to an absolute path (trials run in
    other working directories, on other nodes) and checked to hold every split the sweep reads."""
    data = study_plan.base_config.data
    splits = sorted(
        {
            (data.dataset, data.train_split),
            (data.eval_dataset, BANK_SPLIT),
            (data.eval_dataset, QUERY_SPLIT),
        }
    )
    on_disk = [(name, split) for name, split in splits if not DATASETS[name].bundled]
    if not on_disk:
        return config, study_plan
    root = (Path(data.root).expanduser() if data.root else default_data_root()).resolve()
    for name, split in on_disk:
        try:
            get_dataset(name, root, split)
        except FileNotFoundError as error:
            raise ConfigError(
                "data.root", str(root), f"a folder holding {name}'s {split} split ({error})"
            ) from error
    rooted = {"data.root": str(root)}
    return (
        dataclasses.replace(config, overrides={**config.overrides, **rooted}),
        dataclasses.replace(study_plan, base_config=study_plan.base_config.replace(**rooted)),
    )


def check_existing(directory: Path, config: StudyConfig, name: str) -> None:
    """A taken sweep name is refused unless the config says to resume or overwrite that sweep;
    neither is allowed while the sweep's driver is alive."""
    if config.if_exists == "overwrite" and SweepStorage(config.storage).is_uri:
        raise ConfigError(
            "if_exists",
            "overwrite",
            f"refuse or resume with object storage ({config.storage}): sweep {name} is "
            "kept there; choose another --name",
        )
    if config.if_exists == "refuse":
        raise ConfigError(
            "name",
            name,
            f"a new sweep name: {directory} exists (resume it with `study resume {name}` or "
            "`study run ... --resume`, or replace it with --overwrite)",
        )
    state = read_state(directory) if (directory / STATE_FILE).is_file() else None
    if state is not None and state.live:
        raise ConfigError(
            "name",
            name,
            f"a sweep that is not running ({directory} is being run by {state.driver})",
        )
    if config.if_exists == "resume" and state is None:
        raise ConfigError("name", name, f"a sweep to resume ({directory} has no {STATE_FILE})")


def set_aside(directory: Path) -> Path:
    """Move an overwritten sweep's directory under ``<storage>/.replaced/`` (never deleted)."""
    target = directory.parent / REPLACED_DIR / f"{directory.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    target.parent.mkdir(exist_ok=True)
    directory.rename(target)
    logger.warning(
        "sweep %s overwritten: its directory is kept as %s (its MLflow runs are kept too)",
        directory.name,
        target,
    )
    return target


def prepare_study(config: StudyConfig) -> Prepared:
    """Every check that needs no cluster: the configs, the name, the data, the tracking store,
    and on a local run the GPUs. Raises ConfigError; starts and writes nothing."""
    study_plan = plan(config)
    storage = SweepStorage(config.storage)
    directory = storage.directory(study_plan.name)
    exists = storage.exists(study_plan.name)
    if exists:
        check_existing(storage.pull(study_plan.name), config, study_plan.name)
    tracking_uri = check_tracking_store(resolve_tracking_uri(config.tracking_uri))
    config, study_plan = with_data_root(config, study_plan)
    local = not cluster_address(config.address) and not ray.is_initialized()
    if local:
        config = check_gpus(config, study_plan, local_gpus())
    return Prepared(config, study_plan, storage, directory, exists, tracking_uri, local)
