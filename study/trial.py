"""One Tune trial: a function that runs one Ray Train ``TorchTrainer`` (Train V2's pattern).

It builds the trial's TrainConfig from the sweep's base config and the searcher's dotted
overrides, creates the child MLflow run and, in the background while Train starts its workers,
records its params and artifacts (config YAML and, when the entry point gives a view gallery, a
grid of sampled view pairs); it trains with :class:`TuneReportCallback` relaying each epoch to
Tune. (The final backbone weights are logged by the sweep driver's callback: ASHA stops a trial
at ``max_t`` as soon as the last epoch is reported, before this function returns.) The Train run
is named after the trial, so a restarted trial resumes from its latest checkpoint.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import ray
import yaml
from mlflow.entities import RunTag
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from study.outbox import quick_failing, unavailable
from study.tracking import Tracking, as_params
from study.vocabulary import CONFIG_ARTIFACT, VIEW_PAIRS_FILE
from trainables.config import TrainConfig
from trainables.ray_trainable import TrainerSpec, build_trainer
from trainables.timeline import mark

logger = logging.getLogger(__name__)
T = TypeVar("T")
ViewGallery = Callable[..., Path]
"""``(config, path, count=, seed=) -> path``: :func:`dashboards.gallery.draw_view_pairs`, given by
the entry point (``study/`` does not import ``dashboards/``)."""


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a sweep shares (passed once through the object store)."""

    base_config: dict[str, Any]
    trainer: TrainerSpec
    tracking: Tracking
    view_gallery: ViewGallery | None = None
    """Draws a config's view pairs to a PNG, logged with the trial (none: not drawn)."""
    gallery_pairs: int = 8


def trial_config(base: dict[str, Any], overrides: dict[str, Any]) -> TrainConfig:
    return TrainConfig.from_dict(base).replace(**overrides)


def log_trial_start(
    tracking: Tracking,
    run_id: str,
    config: TrainConfig,
    overrides: dict[str, Any],
    view_gallery: ViewGallery | None,
    pairs: int,
) -> None:
    client = tracking.client()
    params = as_params(config.to_dict())
    existing = client.get_run(run_id).data.params
    client.log_batch(
        run_id,
        params=[param for param in params if param.key not in existing],
        tags=[RunTag(f"search.{key}", str(value)) for key, value in overrides.items()],
    )
    with tempfile.TemporaryDirectory() as scratch:
        config_path = Path(scratch) / CONFIG_ARTIFACT
        config_path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        client.log_artifact(run_id, str(config_path))
        if view_gallery is not None:
            views_path = view_gallery(
                config, Path(scratch) / VIEW_PAIRS_FILE, count=pairs, seed=config.seed
            )
            client.log_artifact(run_id, str(views_path))


def run_trial(overrides: dict[str, Any], context: TrialContext) -> None:
    mark("trial.enter")
    trial_id = tune.get_context().get_trial_id()
    config = trial_config(context.base_config, overrides)
    run_id = tracked(
        lambda: context.tracking.trial_run(trial_id, tune.get_context().get_trial_name()), trial_id
    )
    trainer = build_trainer(
        config, context.trainer, name=f"trial-{trial_id}", callbacks=[TuneReportCallback()]
    )
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="trial-start-logging") as background:
        if (
            run_id is not None
        ):  # params, config.yaml and the view gallery, while Train starts its workers
            logging_start = background.submit(
                tracked,
                lambda: log_trial_start(
                    context.tracking,
                    run_id,
                    config,
                    overrides,
                    context.view_gallery,
                    context.gallery_pairs,
                ),
                trial_id,
            )
            logging_start.add_done_callback(warn_on_error)
        mark("trial.tracked")
        trainer.fit()
        await_relayed_results()


RELAY_SETTLE_S = 2.0
RELAY_LIMIT_S = 120.0


def await_relayed_results(settle_s: float = RELAY_SETTLE_S, limit_s: float = RELAY_LIMIT_S) -> None:
    """Return once Tune has taken every result ``TuneReportCallback`` relayed, or Tune stops the
    trial.

    Train's controller relays each epoch through a queue that the Tune trial's main thread
    drains, and ``fit()`` can return before the last epoch is drained. If the trial function
    then returned at once, Ray would queue its end-of-function marker in the one-slot result
    queue while the main thread still holds that epoch, and the main thread would block forever
    putting it there (a trial stuck RUNNING, seen in this project's CI). So wait until both
    queues have been empty for ``settle_s``."""
    from ray.train._internal.session import get_session

    session = get_session()
    relay = getattr(session, "_inter_actor_queue", None) if session is not None else None
    if relay is None:
        return
    deadline = time.monotonic() + limit_s
    quiet_since = None
    while time.monotonic() < deadline and not session.stop_event.is_set():
        try:
            drained = relay.empty() and session.result_queue.empty()
        except ray.exceptions.RayError:  # the relay's queue actor is gone: nothing left to take
            return
        if drained:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= settle_s:
                return
        else:
            quiet_since = None
        time.sleep(0.05)


def warn_on_error(done: Future) -> None:
    if done.exception() is not None:
        logger.warning(
            "logging the start of a trial to MLflow failed; training goes on",
            exc_info=done.exception(),
        )


START_ATTEMPTS = 3
START_RETRY_S = 3.0


def tracked(write: Callable[[], T], trial_id: str, attempts: int = START_ATTEMPTS) -> T | None:
    """``write()`` (idempotent), tried ``attempts`` times a few seconds apart while MLflow does not
    answer (a busy server times out); then None with a warning: training goes on, and the sweep
    driver logs the trial's params, metrics and status once MLflow is back."""
    for attempt in range(1, attempts + 1):
        try:
            with quick_failing():
                return write()
        except Exception as error:
            if not unavailable(error):
                raise
            if attempt < attempts:
                time.sleep(START_RETRY_S)
                continue
            text = str(error)
            logger.warning(
                "MLflow did not answer at the start of trial %s after %d attempts (%s): "
                "training goes on; the sweep driver logs its params, metrics and status once "
                "MLflow is back (its config.yaml and view_pairs.png are not logged)",
                trial_id,
                attempts,
                text if len(text) <= 400 else f"{text[:150]} ... {text[-250:]}",
            )
    return None
