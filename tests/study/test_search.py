"""StudySearch against a real Optuna RDB study, driven through Tune's Searcher API."""

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.search import Searcher

from search_spaces import with_seeds
from search_spaces.grids import grid_define
from study.search import StudySearch


def searcher(tmp_path, define, points=(), max_epochs=4):
    return StudySearch(
        define,
        max_epochs=max_epochs,
        metric="knn_top1",
        mode="max",
        study_name="s",
        storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        seed=0,
        points=points,
    )


def overlap_space(trial):
    trial.suggest_float("views.params.overlap", 0.1, 0.9)
    return {"views.family": "overlap"}


def report(search, trial_id, values):
    for epoch, value in enumerate(values, start=1):
        search.on_trial_result(
            trial_id, {"knn_top1": value, "epoch": epoch, "training_iteration": epoch}
        )
    return {"knn_top1": values[-1], "epoch": len(values), "training_iteration": len(values)}


def test_stopped_trials_are_pruned_with_their_intermediate_values(tmp_path):
    search = searcher(tmp_path, overlap_space)
    config = search.suggest("a")
    assert config["views.family"] == "overlap" and 0.1 <= config["views.params.overlap"] <= 0.9
    search.suggest("b")
    search.on_trial_complete("a", report(search, "a", [0.3, 0.5, 0.6, 0.7]))
    last = report(search, "b", [0.2])
    search.on_trial_complete("b", {**last, "knn_top1": 0.25, "epoch": 2})
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    finished, stopped = study.trials
    assert finished.state == TrialState.COMPLETE and finished.value == 0.7
    assert stopped.state == TrialState.PRUNED
    assert stopped.intermediate_values == {1: 0.2, 2: 0.25}
    assert stopped.user_attrs["stopped_at_epoch"] == 2


def test_errors_are_failed_not_pruned(tmp_path):
    search = searcher(tmp_path, overlap_space)
    search.suggest("a")
    search.on_trial_complete("a", None, error=True)
    assert search.study.trials[0].state == TrialState.FAIL


def test_grid_runs_every_point_and_seed_exactly_once(tmp_path):
    points = with_seeds(
        [{"views.family": "patch", "views.params.patch": p} for p in (0.2, 0.4, 0.6)], [0, 1]
    )
    search = searcher(tmp_path, grid_define(points), points=points)
    suggested = [search.suggest(str(i)) for i in range(len(points))]
    assert sorted(map(sorted, (c.items() for c in suggested))) == sorted(
        map(sorted, (p.items() for p in points))
    )
    assert search.suggest("extra") == Searcher.FINISHED
    again = searcher(
        tmp_path, grid_define(points), points=points
    )  # reopening the RDB study re-enqueues nothing
    assert len(again.study.get_trials(states=(TrialState.WAITING,))) == 0


def test_discrete_configurations_are_never_run_twice(tmp_path):
    def fills(trial):
        trial.suggest_categorical("views.params.fill", ["zero", "blur", "none"])
        return {"views.family": "cutout"}

    search = searcher(tmp_path, fills)
    seen = []
    for index in range(3):
        config = search.suggest(str(index))
        seen.append(config["views.params.fill"])
        search.on_trial_complete(str(index), report(search, str(index), [0.1 * index + 0.1] * 4))
    assert sorted(seen) == ["blur", "none", "zero"]
    assert search.suggest("3") == Searcher.FINISHED
    real = [t for t in search.study.trials if "duplicate_of" not in t.user_attrs]
    assert len(real) == 3


GRID_POINT = {"views.family": "overlap", "views.params.overlap": 0.3, "seed": 0}


@pytest.mark.parametrize("points", [[], [GRID_POINT]], ids=["searched", "grid"])
def test_searcher_state_survives_a_tune_checkpoint(tmp_path, points):
    """The trial asked for before Tune saved the searcher is told to the same Optuna trial after
    the restore, with the parameters it was suggested (a grid point's are the point)."""
    define = grid_define(points) if points else overlap_space
    search = searcher(tmp_path, define, points=points)
    config = search.suggest("a")
    if points:
        assert config == GRID_POINT
        expected_params = GRID_POINT
    else:
        assert set(config) == {"views.family", "views.params.overlap"}
        assert config["views.family"] == "overlap"
        assert 0.1 <= config["views.params.overlap"] <= 0.9
        expected_params = {"views.params.overlap": config["views.params.overlap"]}
    search.save(str(tmp_path / "searcher.pkl"))
    (tmp_path / "fresh").mkdir()
    restored = searcher(tmp_path / "fresh", define)
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.on_trial_complete("a", report(restored, "a", [0.4] * 4))
    trials = restored.study.trials
    assert [trial.params for trial in trials] == [expected_params], "one trial, its parameters"
    assert [(trial.state, trial.value) for trial in trials] == [(TrialState.COMPLETE, 0.4)]


def test_a_grid_point_asked_for_after_the_last_saved_state_is_run_after_a_restore(tmp_path):
    points = with_seeds(
        [{"views.family": "overlap", "views.params.overlap": p} for p in (0.3, 0.5, 0.7)], [0]
    )
    search = searcher(tmp_path, grid_define(points), points=points)
    kept = [search.suggest("a"), search.suggest("b")]
    search.save(str(tmp_path / "searcher.pkl"))
    lost = search.suggest("c")  # the driver is killed before Tune saves its state again
    restored = searcher(tmp_path, grid_define(points), points=points)
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.suggest("d") == lost
    assert restored.suggest("e") == Searcher.FINISHED
    for trial_id in ("a", "b", "d"):
        restored.on_trial_complete(trial_id, report(restored, trial_id, [0.5] * 4))
    assert [trial.state for trial in restored.study.trials] == [TrialState.COMPLETE] * 3
    assert sorted(map(sorted, (c.items() for c in [*kept, lost]))) == sorted(
        map(sorted, (p.items() for p in points))
    )
    assert sorted(trial.params["views.params.overlap"] for trial in restored.study.trials) == [
        0.3,
        0.5,
        0.7,
    ]


def test_a_searched_trial_asked_for_after_the_last_saved_state_is_not_left_running(tmp_path):
    search = searcher(tmp_path, overlap_space)
    search.suggest("a")
    search.save(str(tmp_path / "searcher.pkl"))
    lost = search.suggest("b")
    restored = searcher(tmp_path, overlap_space)
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.suggest("c") == lost
    assert restored.suggest("d") != lost
    running = restored.study.get_trials(states=(TrialState.RUNNING,))
    assert len(running) == 3 and all("duplicate_of" not in trial.user_attrs for trial in running)
