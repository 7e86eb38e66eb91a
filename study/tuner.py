"""The Tuner of a sweep: its trial function with the resources it asks for, the Optuna searcher,
ASHA (when the plan stops trials early), the concurrency the cluster allows, and the callbacks
that log to MLflow and push the driver's files to object storage."""

from __future__ import annotations

import logging

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from study.callbacks import MlflowTrialCallback, PushCallback, TimelineCallback
from study.config import METRIC, MODE, StudyConfig, StudyPlan, with_gpus
from study.console import TRAIN_LOG_LEVEL, TUNE_VERBOSITY, TrialConsole, configure_console
from study.layout import optuna_storage
from study.outbox import Outbox
from study.search import StudySearch
from study.storage import SweepStorage
from study.tracking import Tracking
from study.trial import TrialContext, ViewGallery, run_trial
from study.vocabulary import EPOCH, TRAIN_DIR
from trainables.ray_trainable import DatasetShare, ScalingSpec, TrainerSpec
from trainables.validation import ConfigError

logger = logging.getLogger(__name__)

TRIAL_DRIVER_MEMORY = 256 * 1024**2


def local_gpus() -> int:
    import torch

    return torch.cuda.device_count()


def check_gpus(config: StudyConfig, study_plan: StudyPlan, available: float) -> StudyConfig:
    """``config`` with its GPUs per trial resolved (:func:`~study.config.with_gpus`); a trial asking
    for more GPUs than the cluster has would wait forever: refuse it."""
    config = with_gpus(config, study_plan.base_config, available)
    if config.gpus_per_trial > available:
        raise ConfigError(
            "gpus_per_trial",
            config.gpus_per_trial,
            f"at most {available:g}, the GPUs of the cluster",
        )
    return config


def concurrency(config: StudyConfig) -> int:
    if config.max_concurrent_trials is not None:
        return config.max_concurrent_trials
    cpus_per_trial = config.workers_per_trial * config.cpus_per_worker
    available = ray.cluster_resources().get("CPU", 1)
    by_cpu = int(available // cpus_per_trial) if cpus_per_trial else 1
    if config.gpus_per_trial:
        by_cpu = min(
            by_cpu, int(ray.cluster_resources().get("GPU", 0) // config.gpus_per_trial) or 1
        )
    return max(1, by_cpu)


def dataset_share() -> ray.actor.ActorHandle:
    """The sweep's :class:`DatasetShare`, on the driver's node: it lives as long as the sweep,
    whichever worker nodes come and go."""
    if ray.util.client.ray.is_connected():  # Ray Client: this process is no node of the cluster
        return DatasetShare.remote()
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    return DatasetShare.options(scheduling_strategy=here).remote()


def trainable(
    study_plan: StudyPlan,
    config: StudyConfig,
    storage: SweepStorage,
    tracking: Tracking,
    training: bool = True,
    view_gallery: ViewGallery | None = None,
):
    """The trial function with its resources; ``training=False`` (reading results back) starts
    no actor."""
    spec = TrainerSpec(
        scaling=ScalingSpec(
            num_workers=config.workers_per_trial,
            cpus_per_worker=config.cpus_per_worker,
            gpus_per_worker=(config.gpus_per_trial or 0.0) / config.workers_per_trial,
        ),
        storage_path=storage.remote(study_plan.name, TRAIN_DIR),
        checkpoints_to_keep=config.checkpoints_to_keep,
        max_failures=config.max_failures,
        datasets=dataset_share() if training else None,
        log_level=TRAIN_LOG_LEVEL[config.verbose],
    )
    context = TrialContext(
        base_config=study_plan.base_config.to_dict(),
        trainer=spec,
        tracking=tracking,
        view_gallery=view_gallery,
    )
    return tune.with_resources(
        tune.with_parameters(run_trial, context=context), {"cpu": 0, "memory": TRIAL_DRIVER_MEMORY}
    )


def scheduler(study_plan: StudyPlan) -> ASHAScheduler | None:
    """ASHA when the plan stops trials early; else None (Tune's FIFO: every trial to the last
    epoch)."""
    if not study_plan.early_stopping:
        return None
    asha = study_plan.asha
    return ASHAScheduler(
        time_attr=EPOCH,
        grace_period=asha.grace_period,
        reduction_factor=asha.reduction_factor,
        max_t=asha.max_t,
    )


def build_tuner(
    study_plan: StudyPlan,
    config: StudyConfig,
    storage: SweepStorage,
    tracking: Tracking,
    outbox: Outbox,
    view_gallery: ViewGallery | None = None,
) -> tune.Tuner:
    directory = storage.directory(study_plan.name)
    searcher = StudySearch(
        study_plan.define,
        max_epochs=study_plan.epochs,
        metric=METRIC,
        mode=MODE,
        study_name=study_plan.name,
        storage=optuna_storage(directory),
        seed=config.seed,
        points=study_plan.points,
    )
    configure_console(config.verbose)
    return tune.Tuner(
        trainable(study_plan, config, storage, tracking, view_gallery=view_gallery),
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode=MODE,
            search_alg=searcher,
            scheduler=scheduler(study_plan),
            num_samples=study_plan.num_samples,
            max_concurrent_trials=concurrency(config),
        ),
        run_config=tune.RunConfig(
            name=study_plan.name,
            storage_path=storage.tune_root,
            failure_config=tune.FailureConfig(max_failures=config.max_failures),
            verbose=TUNE_VERBOSITY[config.verbose],
            callbacks=[
                TrialConsole(
                    METRIC,
                    MODE,
                    study_plan.num_samples,
                    study_plan.epochs,
                    table=not config.verbose,
                ),
                MlflowTrialCallback(
                    outbox, study_plan.epochs, study_plan.base_config.to_dict(), storage.location
                ),
                TimelineCallback(),
                PushCallback(storage.location, study_plan.name),
            ],
        ),
    )
