"""Optuna views on in-memory studies: the space as drawn, importances, parallel coordinates."""

import optuna
import pytest

from dashboards.figures import STOPPED_COLOUR
from dashboards.search import (
    make_axis,
    parallel_coordinates_figure,
    param_importances,
    searched_space,
)
from dashboards.series import MissingData

optuna.logging.set_verbosity(optuna.logging.WARNING)


def cutout_study(values):
    """A study over a float, a categorical and a conditional param; the last trial is pruned."""
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for index, value in enumerate(values):
        trial = study.ask()
        hole = trial.suggest_float("views.params.hole", 0.1, 0.7)
        fill = trial.suggest_categorical("views.params.fill", ["zero", "blur"])
        if fill == "blur":
            trial.suggest_float("views.params.blur", 0.25, 1.0, log=True)
        if index == len(values) - 1:
            trial.report(value, step=1)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, value + hole)
    return study


def test_the_space_is_described_as_the_searcher_drew_it():
    space = searched_space(cutout_study([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]))
    assert space["views.params.hole"] == "float in [0.1, 0.7]"
    assert space["views.params.fill"] == "one of ['zero', 'blur']"
    assert space["views.params.blur"] == "float in [0.25, 1], log", (
        "the conditional param of the blur trials"
    )


def test_importances_cover_the_varied_params_and_sum_to_one():
    importances = param_importances(cutout_study([0.1 * index for index in range(12)]))
    assert {"views.params.hole", "views.params.fill"} <= set(importances)
    assert sum(importances.values()) == pytest.approx(1.0)


def test_importance_needs_scores_that_differ():
    study = optuna.create_study(direction="maximize")
    for overlap, crop in ((0.2, 0.3), (0.4, 0.1), (0.6, 0.5)):
        study.enqueue_trial({"overlap": overlap, "crop": crop})
        trial = study.ask()
        trial.suggest_float("overlap", 0.1, 0.9)
        trial.suggest_float("crop", 0.1, 0.9)
        study.tell(trial, 0.5)
    with pytest.raises(MissingData, match="score differently"):
        param_importances(study)


def test_parallel_coordinates_draw_each_trial_and_grey_out_the_pruned_one():
    study = cutout_study([0.1, 0.2, 0.3, 0.4, 0.5])
    (axes,) = parallel_coordinates_figure(study).axes
    lines = {
        artist.get_gid(): artist
        for artist in axes.lines
        if str(artist.get_gid()).startswith("trial:")
    }
    assert len(lines) == 5
    pruned = lines[f"trial:{study.trials[-1].number}"]
    assert pruned.get_color() == STOPPED_COLOUR and pruned.get_linestyle() == "--"
    labels = [label.get_text() for label in axes.get_xticklabels()]
    assert labels[:2] == ["hole", "fill"] and labels[-1] == "knn_top1"


def test_axes_scale_numbers_to_the_unit_interval_and_space_categories_evenly():
    numbers = make_axis("hole", [0.1, 0.4, 0.7])
    assert [numbers.place(value) for value in (0.1, 0.4, 0.7)] == pytest.approx([0.0, 0.5, 1.0])
    categories = make_axis("fill", ["zero", "blur", "none"])
    assert sorted(categories.place(value) for value in ("zero", "blur", "none")) == pytest.approx(
        [0.0, 0.5, 1.0]
    )
