"""Optuna search for Ray Tune that knows an early-stopped trial from a finished one.

Ray's ``OptunaSearch`` tells Optuna that an ASHA-stopped trial is COMPLETE with its truncated
value, so a two-epoch accuracy steers TPE as if it were final. :class:`StudySearch` tells
Optuna PRUNED instead (the intermediate values were already reported per epoch), never runs a
configuration of a discrete space twice, and runs every enqueued grid point exactly once, also
across a killed driver: a trial asked for after Tune's last saved state is adopted by the next
suggestion of the restored sweep. A trial that stopped itself (diverged or collapsed) is FAIL,
with the reason as a user attribute.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from study.vocabulary import EPOCH, stop_reason_of, stopped_early
from trainables.health import STOP_REASON_KEY

logger = logging.getLogger(__name__)

DUPLICATE_OF = "duplicate_of"
MAX_DUPLICATE_ASKS = 200


def params_key(params: dict[str, Any]) -> tuple:
    return tuple(sorted((key, repr(value)) for key, value in params.items()))


class StudySearch(OptunaSearch):
    """``OptunaSearch`` over a define-by-run space of dotted TrainConfig overrides.

    Args:
        define: the define-by-run (suggests dotted names, returns constant overrides).
        max_epochs: the epoch count of a finished trial; fewer means it was stopped.
        points: grid points to enqueue; when given, exactly these trials run, once each.
        storage: an Optuna RDB URL (``sqlite:///.../optuna.db``) so optuna-dashboard can open it.
    """

    def __init__(
        self,
        define: Callable[[optuna.Trial], dict[str, Any]],
        *,
        max_epochs: int,
        metric: str,
        mode: str,
        study_name: str,
        storage: str,
        seed: int,
        points: Sequence[dict[str, Any]] = (),
    ) -> None:
        super().__init__(
            space=define,
            metric=metric,
            mode=mode,
            sampler=optuna.samplers.TPESampler(seed=seed),
            study_name=study_name,
            storage=optuna.storages.RDBStorage(storage),
        )
        self.max_epochs = max_epochs
        self.grid = bool(points)
        for point in points:
            self._ot_study.enqueue_trial(dict(point), skip_if_exists=True)

    @property
    def study(self) -> optuna.Study:
        return self._ot_study

    def _earlier_trial(self, ot_trial: optuna.Trial) -> optuna.trial.FrozenTrial | None:
        """A finished, pruned or running trial with the same parameters as ``ot_trial``."""
        key = params_key(ot_trial.params)
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        for trial in self._ot_study.get_trials(deepcopy=False, states=states):
            if (
                trial.number != ot_trial.number
                and DUPLICATE_OF not in trial.user_attrs
                and params_key(trial.params) == key
            ):
                return trial
        return None

    def _orphan(self) -> optuna.Trial | None:
        """An Optuna trial asked for (RUNNING) that this Tune run does not know: one suggested
        after the last saved Tune state of a driver that was then killed."""
        known = {ot_trial.number for ot_trial in self._ot_trials.values()}
        for trial in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.number not in known:
                return optuna.Trial(self._ot_study, trial._trial_id)
        return None

    def _grid_exhausted(self) -> bool:
        return self.grid and not self._ot_study.get_trials(
            deepcopy=False, states=(TrialState.WAITING,)
        )

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if trial_id in self._ot_trials:
            return super().suggest(trial_id)
        orphan = self._orphan()
        if orphan is not None:
            self._ot_trials[trial_id] = orphan
            return self._suggest_from_define_by_run_func(self._space, orphan)
        if self._grid_exhausted():
            return Searcher.FINISHED
        for _ in range(MAX_DUPLICATE_ASKS):
            ot_trial = self._ot_study.ask()
            params = self._suggest_from_define_by_run_func(self._space, ot_trial)
            earlier = self._earlier_trial(ot_trial)
            if earlier is None:
                self._ot_trials[trial_id] = ot_trial
                return params
            self._skip_duplicate(ot_trial, earlier)
        logger.info("every configuration of this discrete space has been tried")
        return Searcher.FINISHED

    def _skip_duplicate(self, ot_trial: optuna.Trial, earlier: optuna.trial.FrozenTrial) -> None:
        """Close a repeated ask without running it: with the earlier value if there is one."""
        ot_trial.set_user_attr(DUPLICATE_OF, earlier.number)
        if earlier.state == TrialState.COMPLETE:
            self._ot_study.tell(ot_trial, earlier.value)
        else:
            self._ot_study.tell(ot_trial, state=TrialState.FAIL)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Intermediate values are keyed by epoch (Tune's iteration count restarts on resume)."""
        if trial_id in self._completed_trials or not math.isfinite(
            float(result.get(self.metric, math.nan))
        ):
            return
        self._ot_trials[trial_id].report(
            float(result[self.metric]), int(result.get(EPOCH, result["training_iteration"]))
        )

    def _already_told(self, trial_id: str) -> bool:
        """A trial Optuna has an outcome for: a sweep resumed from a Tune state saved before the
        trial completed runs it again, and Optuna must not be told twice."""
        ot_trial = self._ot_trials.get(trial_id)
        return ot_trial is not None and self._ot_study.trials[ot_trial.number].state.is_finished()

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if self._already_told(trial_id):
            self._completed_trials.add(trial_id)
            return
        reason = stop_reason_of(result)
        if reason is not None and not error and trial_id not in self._completed_trials:
            ot_trial = self._ot_trials[trial_id]
            ot_trial.set_user_attr(STOP_REASON_KEY, reason)
            self._ot_study.tell(ot_trial, state=TrialState.FAIL)
            self._completed_trials.add(trial_id)
            return
        if (
            error
            or not stopped_early(result, self.max_epochs)
            or trial_id in self._completed_trials
        ):
            super().on_trial_complete(trial_id, result, error)
            return
        ot_trial = self._ot_trials[trial_id]
        epoch = int(result[EPOCH])
        if (
            self.metric in result
            and epoch not in self._ot_study.trials[ot_trial.number].intermediate_values
        ):
            ot_trial.report(float(result[self.metric]), epoch)
        ot_trial.set_user_attr("stopped_at_epoch", epoch)
        self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)
