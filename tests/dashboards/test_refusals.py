"""Figures whose data cannot say anything (one parameter's importance, a curve through one value,
a comparison of one arm) are refused with the reason, saying what the sweep had; the same figure
is drawn once the data can say something. Real Optuna studies and real trials tables, no Ray."""

import optuna
import pandas as pd
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from dashboards.comparisons import comparisons_html, cutout_comparisons, grid_comparisons
from dashboards.comparisons import margin_comparisons as margin_comparisons_of
from dashboards.figures import (
    cutout_figure,
    learning_curves_figure,
    margin_figure,
    overlap_figure,
    overlap_vs_patch_figure,
)
from dashboards.report import write_report
from dashboards.search import importance_figure, parallel_coordinates_figure
from dashboards.series import MissingData
from dashboards.sweeps import from_tables
from study.vocabulary import OPTUNA_FILE
from study_cli.output import print_report

optuna.logging.set_verbosity(optuna.logging.WARNING)

NAME = "refusals"
OVERLAP, CROP = "views.params.overlap", "views.params.crop"


def study_of(trials, storage=None, name=NAME):
    """A real Optuna study of ``(params, value)`` trials, COMPLETE; ``(params, value, "pruned")``
    is PRUNED with ``value`` as its one intermediate value. Floats are drawn in [0, 1], ints
    (the seed) in [0, 9]."""
    study = optuna.create_study(direction="maximize", study_name=name, storage=storage)
    for params, value, *pruned in trials:
        distributions = {
            key: IntDistribution(0, 9) if isinstance(drawn, int) else FloatDistribution(0.0, 1.0)
            for key, drawn in params.items()
        }
        study.add_trial(
            create_trial(
                params=params,
                distributions=distributions,
                state=TrialState.PRUNED if pruned else TrialState.COMPLETE,
                value=None if pruned else value,
                intermediate_values={1: value} if pruned else None,
            )
        )
    return study


def refused(draw, *args):
    with pytest.raises(MissingData) as raised:
        draw(*args)
    return str(raised.value), raised.value.short


def trial_lines(axes):
    return sorted(
        artist.get_gid() for artist in axes.lines if str(artist.get_gid()).startswith("trial:")
    )


def test_the_importance_of_one_parameter_is_refused_and_of_two_drawn():
    one = study_of(
        [
            ({OVERLAP: overlap, CROP: 0.5}, score)
            for overlap, score in ((0.2, 0.3), (0.5, 0.6), (0.8, 0.4), (0.4, 0.5))
        ]
    )
    message, short = refused(importance_figure, one)
    assert message == (
        "one parameter varied over the 4 completed trials of study refusals "
        f"({OVERLAP}; ['{CROP}'] took one value): its importance is 1.00 by definition"
    )
    assert short == "one parameter searched"
    two = study_of(
        [
            ({OVERLAP: overlap, CROP: crop}, score)
            for overlap, crop, score in (
                (0.2, 0.5, 0.3),
                (0.5, 0.3, 0.6),
                (0.8, 0.9, 0.4),
                (0.4, 0.1, 0.5),
            )
        ]
    )
    (axes,) = importance_figure(two).axes
    assert {label.get_text() for label in axes.get_yticklabels()} == {OVERLAP, CROP}


def test_importance_needs_more_configurations_than_parameters():
    """Two trials differing in two parameters cannot tell their effects apart; three can."""
    points = [({OVERLAP: 0.2, "seed": 0}, 0.3), ({OVERLAP: 0.8, "seed": 1}, 0.6)]
    message, short = refused(importance_figure, study_of(points))
    assert message == (
        f"fANOVA cannot tell the effects of 2 parameters ({OVERLAP}, seed) apart: the 2 "
        "completed trials of study refusals have 2 distinct configurations, it needs at least 3"
    )
    assert short == "2 configurations for 2 parameters"
    (axes,) = importance_figure(study_of([*points, ({OVERLAP: 0.8, "seed": 0}, 0.55)])).axes
    assert {label.get_text() for label in axes.get_yticklabels()} == {OVERLAP, "seed"}


def test_parallel_coordinates_of_one_trial_are_refused_and_of_two_drawn():
    one = study_of([({OVERLAP: 0.2}, 0.3)])
    message, short = refused(parallel_coordinates_figure, one)
    assert message == (
        "the parallel-coordinates view compares scored trials; study refusals has 1 (1 complete)"
    )
    assert short == "one scored trial"
    two = study_of([({OVERLAP: 0.2}, 0.3), ({OVERLAP: 0.7}, 0.2, "pruned")])
    (axes,) = parallel_coordinates_figure(two).axes
    assert trial_lines(axes) == ["trial:0", "trial:1"], "the pruned trial at its last score"


def test_parallel_coordinates_that_differ_only_in_the_seed_are_refused():
    seeds = [({OVERLAP: 0.3, "seed": seed}, 0.3 + seed / 10) for seed in (0, 1, 2)]
    message, short = refused(parallel_coordinates_figure, study_of(seeds))
    assert message == (
        "the parallel-coordinates view needs scored trials that differ in a searched parameter; "
        "the 3 scored trials of study refusals differ only in the seed"
    )
    assert short == "only the seed varied"
    (axes,) = parallel_coordinates_figure(study_of([*seeds, ({OVERLAP: 0.7, "seed": 0}, 0.1)])).axes
    assert [label.get_text() for label in axes.get_xticklabels()] == ["overlap", "knn_top1"]


def test_parallel_coordinates_of_one_score_are_refused():
    same = [({OVERLAP: overlap}, 0.25) for overlap in (0.2, 0.5, 0.8)]
    message, short = refused(parallel_coordinates_figure, study_of(same))
    assert message == (
        "the parallel-coordinates view relates the parameters to the score; "
        "all 3 scored trials of study refusals scored 0.2500"
    )
    assert short == "every trial scored the same"
    (axes,) = parallel_coordinates_figure(study_of([*same, ({OVERLAP: 0.4}, 0.5)])).axes
    assert len(trial_lines(axes)) == 4


def sweep_of(rows, max_epochs=2, **context):
    """A sweep from one dict per trial: its config columns, ``curve`` (its knn_top1 by epoch,
    default two epochs ending at ``score``) and ``status`` (default FINISHED)."""
    rows = [dict(row) for row in rows]
    curves = {}
    for index, row in enumerate(rows):
        score = row.pop("score", None)
        curves[f"t{index}"] = row.pop("curve", None) or [score / 2, score]
        row.setdefault("status", "FINISHED")
        row.setdefault("data.dataset", "digits")
        row.setdefault("views.size", 16)
        row["trial_id"] = f"t{index}"
    epochs = pd.DataFrame(
        [
            {"trial_id": trial_id, "epoch": epoch, "knn_top1": value}
            for trial_id, curve in curves.items()
            for epoch, value in enumerate(curve, start=1)
        ]
    )
    return from_tables(NAME, pd.DataFrame(rows), epochs, max_epochs, "parquet", **context)


def overlap_rows(values, dataset="digits", seeds=(0, 1)):
    return [
        {
            "views.family": "overlap",
            OVERLAP: overlap,
            "data.dataset": dataset,
            "seed": seed,
            "score": 0.3 + overlap / 2 + seed / 100,
        }
        for overlap in values
        for seed in seeds
    ]


def test_a_curve_through_one_value_per_dataset_is_refused():
    rows = overlap_rows([0.3]) + overlap_rows([0.7], dataset="digit-scenes")
    message, short = refused(overlap_figure, sweep_of(rows))
    assert message == (
        f"Fig. 2a: kNN accuracy vs overlap size draws kNN accuracy against {OVERLAP}; this sweep's "
        "trials took one value of it per dataset (digit-scenes: overlap 0.7; digits: overlap 0.3): "
        "no curve to draw, the score is in the trials table"
    )
    assert short == "one overlap value per dataset"
    (axes,) = overlap_figure(sweep_of(rows + overlap_rows([0.7]))).axes
    (digits,) = [artist for artist in axes.lines if artist.get_gid() == "mean:digits"]
    assert list(digits.get_xdata()) == pytest.approx([0.3, 0.7])
    stopped = {**overlap_rows([0.5], seeds=(0,))[0], "status": "STOPPED", "curve": [0.2]}
    (axes,) = overlap_figure(sweep_of([*rows, stopped])).axes
    assert "stopped:digits" in {artist.get_gid() for artist in axes.lines}, (
        "a trial ASHA stopped at another value is something to set beside the finished ones"
    )


def patch_rows(dataset):
    return [
        {"views.family": "patch", "views.params.patch": patch, "data.dataset": dataset, "score": s}
        for patch, s in ((0.3, 0.4), (0.7, 0.5))
    ]


def test_overlap_beside_patch_needs_both_on_one_dataset():
    overlap = overlap_rows([0.3, 0.7])
    message, short = refused(
        overlap_vs_patch_figure, sweep_of(overlap + patch_rows("digit-scenes"))
    )
    assert message == (
        "Fig. 2c: best overlap vs best patch sets the best overlap beside the best patch of the "
        "same dataset; this sweep's finished trials have overlap on ['digits'] and patch on "
        "['digit-scenes']"
    )
    assert short == "overlap and patch on no common dataset"
    (axes,) = overlap_vs_patch_figure(sweep_of(overlap + patch_rows("digits"))).axes
    assert {container.get_label() for container in axes.containers} >= {
        "best overlap",
        "best patch",
    }


def cutout_rows(arms):
    return [
        {
            "views.family": "cutout",
            "views.params.hole": hole,
            "views.params.fill": fill,
            "views.params.blur": blur,
            "seed": 0,
            "score": score,
        }
        for hole, fill, blur, score in arms
    ]


ZERO_AT_HALF = (0.5, "zero", None, 0.4)


def test_a_cutout_figure_of_one_arm_per_size_is_refused():
    apart = cutout_rows([ZERO_AT_HALF, (0.3, "blur", 0.5, 0.45)])
    message, short = refused(cutout_figure, sweep_of(apart))
    assert message == (
        "Fig. 4: cutout vs cutout-blur compares cutout and cutout-blur arms at the same cutout "
        "size; this sweep's finished cutout trials have one arm at each dataset and size "
        "(digits, size 0.3: cutout-blur 0.5; digits, size 0.5: cutout)"
    )
    assert short == "one cutout arm per size"
    (axes,) = cutout_figure(sweep_of(apart + cutout_rows([(0.5, "blur", 0.5, 0.5)]))).axes
    labels = [c.get_label() for c in axes.containers if getattr(c, "patches", None)]
    assert labels == ["cutout", "cutout-blur 0.5"]


def margin_rows(fixed_status):
    return [
        {
            "views.family": "overlap",
            OVERLAP: 0.3,
            "margin.mode": mode,
            "margin.m": m,
            "seed": 0,
            "status": status,
            "curve": curve,
        }
        for mode, m, status, curve in (
            ("none", None, "FINISHED", [0.2, 0.3]),
            ("fixed", 0.2, fixed_status, [0.25] if fixed_status == "STOPPED" else [0.25, 0.35]),
        )
    ]


def test_a_margin_figure_of_one_finished_arm_is_refused():
    message, short = refused(margin_figure, sweep_of(margin_rows("STOPPED")))
    assert message == (
        "Fig. 5: margins on the SimSiam loss compares the margin arms by epoch; of this sweep's "
        "arms ['vanilla', 'fixed margin'], only 'vanilla' has trials that ran every epoch"
    )
    assert short == "one margin arm finished"
    (axes,) = margin_figure(sweep_of(margin_rows("FINISHED"))).axes
    gids = {artist.get_gid() for artist in axes.lines}
    assert {"mean:vanilla", "mean:fixed margin"} <= gids


def test_learning_curves_of_one_epoch_are_refused():
    rows = [
        {"views.family": "overlap", OVERLAP: overlap, "curve": [overlap]} for overlap in (0.3, 0.7)
    ]
    message, short = refused(learning_curves_figure, sweep_of(rows, max_epochs=1))
    assert message == (
        "learning curves need trials of at least two epochs; each of the 2 trials of sweep "
        "refusals recorded one (epoch 1)"
    )
    assert short == "one epoch per trial"
    longer = [{**row, "curve": [0.1, *row["curve"]]} for row in rows]
    (axes,) = learning_curves_figure(sweep_of(longer)).axes
    assert trial_lines(axes) == ["trial:t0", "trial:t1"]


def test_comparisons_with_one_arm_say_what_the_sweep_had():
    one = cutout_comparisons(sweep_of(cutout_rows([ZERO_AT_HALF])).trials)
    assert one.summary() == (
        "Fig. 4 has nothing to compare: no dataset and cutout size has both cutout and a "
        "cutout-blur arm among the trials that ran every epoch (digits, size 0.5: cutout)."
    )
    two = cutout_comparisons(sweep_of(cutout_rows([ZERO_AT_HALF, (0.5, "blur", 0.5, 0.5)])).trials)
    assert [(item.baseline, item.arm) for item in two.comparisons] == [
        ("cutout", "cutout-blur 0.5")
    ]
    point = grid_comparisons(sweep_of(overlap_rows([0.3])).trials, "Fig. 2a")
    assert point.summary() == (
        "Fig. 2a has nothing to compare: one overlap per dataset among the trials that ran every "
        "epoch (digits: overlap 0.3)."
    )
    assert grid_comparisons(sweep_of(overlap_rows([0.3, 0.7])).trials, "Fig. 2a").comparisons
    margins = margin_comparisons_of(sweep_of(margin_rows("STOPPED")).trials)
    assert margins.summary() == (
        "Fig. 5 has nothing to compare: no setting has two margin arms among the trials that ran "
        "every epoch (overlap views on digits: vanilla)."
    )
    assert margin_comparisons_of(sweep_of(margin_rows("FINISHED")).trials).comparisons


def reported_sweep(directory, params_of):
    """A sweep with its Optuna study in ``directory`` (as ``study report`` finds it): four
    overlap trials, the study's params of each from ``params_of(index, overlap)``."""
    rows = [
        {"views.family": "overlap", OVERLAP: overlap, "seed": index % 2, "score": score}
        for index, (overlap, score) in enumerate(((0.2, 0.3), (0.4, 0.5), (0.6, 0.6), (0.8, 0.4)))
    ]
    study_of(
        [(params_of(index, row[OVERLAP]), row["score"]) for index, row in enumerate(rows)],
        storage=f"sqlite:///{directory / OPTUNA_FILE}",
    )
    return sweep_of(rows, directory=directory)


def test_the_report_lists_a_refused_figure_with_its_reason(tmp_path, capsys):
    """TPE over one parameter: the report leaves the importance out, says why on the page and
    in a few words on the command line; searched with the seed, it is drawn."""
    one = tmp_path / "one"
    one.mkdir()
    report = write_report(
        reported_sweep(one, lambda _, overlap: {OVERLAP: overlap}), one / "report"
    )
    missing = {entry.name: entry for entry in report.missing}
    assert missing["param_importance"].why == "one parameter searched"
    assert missing["param_importance"].missing.endswith("its importance is 1.00 by definition")
    assert {entry.name for entry in report.drawn} == {
        "fig2a_overlap",
        "learning_curves",
        "parallel_coordinates",
        "view_gallery",
    }
    assert not (one / "report" / "param_importance.png").exists()
    page = report.html_path.read_text()
    assert 'id="missing-param_importance"' in page
    assert f"({OVERLAP}): its importance is 1.00 by definition" in page
    assert "Not compared for this sweep: Fig. 2b (no patch trials), Fig. 3" in page
    print_report(report)
    printed = capsys.readouterr().out
    assert "not drawn: " in printed and "no data in this sweep" not in printed
    assert "param_importance (one parameter searched)" in printed
    assert "realised_views (no view_stats.json)" in printed
    assert "fig3_exclusive (no exclusive trials)" in printed
    seeded = tmp_path / "seeded"
    seeded.mkdir()
    report = write_report(
        reported_sweep(seeded, lambda index, overlap: {OVERLAP: overlap, "seed": index % 2}),
        seeded / "report",
    )
    assert "param_importance" in {entry.name for entry in report.drawn}
    assert (seeded / "report" / "param_importance.png").is_file()


def test_a_comparisons_section_names_why_each_figure_is_not_compared():
    page = comparisons_html(sweep_of(overlap_rows([0.3, 0.7])))
    assert (
        "Not compared for this sweep: Fig. 2b (no patch trials), Fig. 3 (no exclusive trials), "
        "Fig. 4 (no cutout trials), Fig. 5 (fewer than two margin modes)." in page
    )
