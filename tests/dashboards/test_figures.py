"""Every figure drawn from real sweeps' MLflow runs and Parquet, checked against the runs'
metrics."""

from collections import defaultdict

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from mlflow.tracking import MlflowClient
from scipy import stats

from dashboards.figures import (
    cutout_figure,
    exclusive_figure,
    learning_curves_figure,
    margin_figure,
    overlap_figure,
    overlap_vs_patch_figure,
    patch_figure,
    realised_views_figure,
)
from dashboards.report import gallery_figure, gallery_settings
from dashboards.search import (
    importance_figure,
    load_study,
    parallel_coordinates_figure,
    param_importances,
)
from dashboards.series import MissingData, cutout_arm
from dashboards.sweeps import combine, load_sweep, view_stats
from search_spaces import get_preset
from search_spaces import margin as margin_space
from study.vocabulary import PIXELS_METRIC, TRIAL_TAG, UNTRAINED_METRIC
from tests.real_sweeps import SEARCH_DATASET

SOURCES = ("parquet", "mlflow")


def runs_of(result):
    """The sweep's child runs straight from MLflow: params and the knn_top1 history by epoch."""
    client = MlflowClient(result.tracking.tracking_uri)
    runs = []
    for run in result.tracking.child_runs():
        history = sorted(
            client.get_metric_history(run.info.run_id, "knn_top1"), key=lambda metric: metric.step
        )
        runs.append(
            {
                "trial_id": run.data.tags[TRIAL_TAG],
                "status": run.info.status,
                "params": run.data.params,
                "history": [(metric.step, metric.value) for metric in history],
            }
        )
    return runs


def expected_points(result, param):
    """x -> (mean, sample std, count) of the final knn_top1 of the finished runs, from MLflow."""
    scores = defaultdict(list)
    for run in runs_of(result):
        if run["status"] == "FINISHED":
            scores[float(run["params"][param])].append(run["history"][-1][1])
    return {
        x: (np.mean(values), np.std(values, ddof=1) if len(values) > 1 else 0.0, len(values))
        for x, values in sorted(scores.items())
    }


def sweep_of(results, *names, source):
    storage = results[names[0]].directory.parent
    return combine([load_sweep(name, storage, source) for name in names])


def axes_of(figure):
    return figure.axes


def logged_baselines(result):
    """The sweep's evaluation setting (from a trial's params) and its baselines as the parent run
    logged them: {(seed, untrained top-1)} and {pixels top-1}."""
    client = MlflowClient(result.tracking.tracking_uri)
    parent = result.tracking.parent_run_id
    params = runs_of(result)[0]["params"]
    setting = (
        params["data.eval_dataset"],
        params["views.size"],
        params["knn.k"],
        params["data.eval_limit"],
    )
    untrained = {
        (point.step, point.value) for point in client.get_metric_history(parent, UNTRAINED_METRIC)
    }
    pixels = {point.value for point in client.get_metric_history(parent, PIXELS_METRIC)}
    return setting, untrained, pixels


def assert_baselines(axes, *results):
    """A horizontal line per baseline at the logged value (the untrained encoder: its mean over
    the seeds); sweeps evaluated differently get a pair each, labelled with their setting."""
    by_setting = {}
    for result in results:
        setting, untrained, pixels = logged_baselines(result)
        assert untrained and len(pixels) == 1, result.name
        known = by_setting.setdefault(setting, (set(), set()))
        known[0].update(untrained)
        known[1].update(pixels)
    for (dataset, size, k, limit), (untrained, pixels) in by_setting.items():
        suffix = (
            ""
            if len(by_setting) == 1
            else f"kNN {dataset} {size} px k={k}" + (f" {limit} images" if limit != "None" else "")
        )
        expected = {
            "untrained": np.mean([value for _, value in untrained]),
            "pixels": np.mean(list(pixels)),
        }
        for kind, label in (("untrained", "untrained encoder"), ("pixels", "raw pixels")):
            drawn = line(axes, f"baseline:{kind}" + (f":{suffix}" if suffix else ""))
            assert list(drawn.get_ydata()) == pytest.approx([expected[kind]] * 2), (
                "horizontal, at the baseline"
            )
            assert drawn.get_label() == label + (f" ({suffix})" if suffix else "")


def line(axes, gid):
    found = [artist for artist in axes.lines if artist.get_gid() == gid]
    assert len(found) == 1, f"{gid} in {[artist.get_gid() for artist in axes.lines]}"
    return found[0]


def assert_labelled(axes):
    assert axes.get_xlabel() and axes.get_ylabel() and axes.get_title()


def t_half_width(std, count):
    """Half the 95% Student-t interval of a mean of ``count`` values (scipy's quantile)."""
    return stats.t.ppf(0.975, count - 1) * std / np.sqrt(count) if count > 1 else None


def interval_lengths(axes, gid):
    (bars,) = [collection for collection in axes.collections if collection.get_gid() == gid]
    return [
        segment[1][1] - segment[0][1] if len(segment) else None for segment in bars.get_segments()
    ]


def assert_series(axes, label, expected):
    drawn = line(axes, f"mean:{label}")
    assert list(drawn.get_xdata()) == pytest.approx(list(expected))
    assert list(drawn.get_ydata()) == pytest.approx([mean for mean, _, _ in expected.values()])
    if any(count > 1 for _, _, count in expected.values()):
        lengths = [
            None if half is None else pytest.approx(2 * half)
            for half in (t_half_width(std, n) for _, std, n in expected.values())
        ]
        assert interval_lengths(axes, f"ci:{label}") == lengths, (
            "the 95% t-interval of the mean over seeds, not ± std"
        )
        legend = [text.get_text() for text in axes.get_legend().get_texts()]
        assert any(text.startswith(f"{label} (") and "95% t-interval" in text for text in legend)
    else:
        assert not [
            collection for collection in axes.collections if collection.get_gid() == f"ci:{label}"
        ], "no interval from one trial"
    best_x = max(expected, key=lambda x: expected[x][0])
    best = line(axes, f"best:{label}")
    assert (best.get_xdata()[0], best.get_ydata()[0]) == pytest.approx(
        (best_x, expected[best_x][0])
    )


@pytest.mark.parametrize("source", SOURCES)
def test_both_sources_read_the_same_trials_as_mlflow_holds(figure_sweeps, source):
    for name, result in figure_sweeps.items():
        sweep = load_sweep(name, result.directory.parent, source)
        runs = {run["trial_id"]: run for run in runs_of(result)}
        assert set(sweep.trials["trial_id"]) == set(runs)
        for _, row in sweep.trials.iterrows():
            run = runs[row["trial_id"]]
            assert row["final_knn_top1"] == pytest.approx(run["history"][-1][1])
            assert row["epochs_run"] == run["history"][-1][0]
            assert (
                row["status"]
                == {"FINISHED": "FINISHED", "KILLED": "STOPPED", "FAILED": "FAILED"}[run["status"]]
            )
            assert row["views.family"] == run["params"]["views.family"]


@pytest.mark.parametrize("source", SOURCES)
def test_overlap_figure_has_one_line_per_dataset_with_mean_and_std_over_seeds(
    figure_sweeps, source
):
    figure = overlap_figure(
        sweep_of(figure_sweeps, "overlap-digits", "overlap-scenes", source=source)
    )
    (axes,) = axes_of(figure)
    assert_labelled(axes)
    assert "overlap" in axes.get_xlabel()
    digits = expected_points(figure_sweeps["overlap-digits"], "views.params.overlap")
    assert [count for _, _, count in digits.values()] == [2, 2], "two seeds at each overlap"
    assert_series(axes, "digits", digits)
    assert_series(
        axes,
        "digit-scenes → kNN digits",
        expected_points(figure_sweeps["overlap-scenes"], "views.params.overlap"),
    )
    assert_baselines(axes, figure_sweeps["overlap-digits"], figure_sweeps["overlap-scenes"])


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(
    ("name", "draw", "param", "word"),
    [
        ("patch-digits", patch_figure, "views.params.patch", "patch"),
        ("exclusive-digits", exclusive_figure, "views.params.gap", "gap"),
    ],
)
def test_parameter_figures_plot_each_runs_score(figure_sweeps, source, name, draw, param, word):
    (axes,) = axes_of(draw(sweep_of(figure_sweeps, name, source=source)))
    assert_labelled(axes)
    assert word in axes.get_xlabel()
    assert_series(axes, "digits", expected_points(figure_sweeps[name], param))
    assert_baselines(axes, figure_sweeps[name])


@pytest.mark.parametrize("source", SOURCES)
def test_overlap_vs_patch_bars_are_the_best_of_each_family(figure_sweeps, source):
    (axes,) = axes_of(
        overlap_vs_patch_figure(
            sweep_of(figure_sweeps, "overlap-digits", "patch-digits", source=source)
        )
    )
    assert_labelled(axes)
    for family, name in (("overlap", "overlap-digits"), ("patch", "patch-digits")):
        points = expected_points(figure_sweeps[name], f"views.params.{family}")
        best_x = max(points, key=lambda x: points[x][0])
        (bars,) = [c for c in axes.containers if c.get_label() == f"best {family}"]
        assert [bar.get_height() for bar in bars] == pytest.approx([points[best_x][0]])
        _, std, count = points[best_x]
        half = t_half_width(std, count)
        assert interval_lengths(axes, f"ci:{family}") == [
            None if half is None else pytest.approx(2 * half)
        ]
        assert any(text.get_text().startswith(f"{family} {best_x:g}") for text in axes.texts)
    assert_baselines(axes, figure_sweeps["overlap-digits"], figure_sweeps["patch-digits"])


@pytest.mark.parametrize("source", SOURCES)
def test_cutout_figure_compares_zero_and_each_blur_at_each_size(figure_sweeps, source):
    (axes,) = axes_of(cutout_figure(sweep_of(figure_sweeps, "cutout-digits", source=source)))
    assert_labelled(axes)
    scores = {
        cutout_arm(run["params"]["views.params.fill"], run["params"].get("views.params.blur")): run[
            "history"
        ][-1][1]
        for run in runs_of(figure_sweeps["cutout-digits"])
    }
    assert set(scores) == {"cutout", "cutout-blur 0.5", "cutout-blur 1"}
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert legend == [
        "untrained encoder",
        "raw pixels",
        "cutout",
        "cutout-blur 0.5",
        "cutout-blur 1",
    ], "lines first, then the bars"
    assert_baselines(axes, figure_sweeps["cutout-digits"])
    for arm, score in scores.items():
        (bars,) = [
            c for c in axes.containers if getattr(c, "patches", None) and c.get_label() == arm
        ]
        assert [bar.get_height() for bar in bars] == pytest.approx([score])
    assert [tick.get_text() for tick in axes.get_xticklabels()] == ["0.5"]


MATCHED_K = margin_space.matched_distance_scale(get_preset("fig5-margin-bundled").base_config())


@pytest.mark.parametrize("source", SOURCES)
def test_margin_figure_plots_each_modes_history_by_epoch(figure_sweeps, source):
    """Drawn beside the cutout sweep, whose trials are vanilla too but on other views and data."""
    (axes,) = axes_of(
        margin_figure(sweep_of(figure_sweeps, "margin-scenes", "cutout-digits", source=source))
    )
    assert_labelled(axes)
    assert axes.get_xlabel() == "epoch"
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    arms = [
        "vanilla",
        "fixed margin",
        "distance-based margin k=1",
        f"distance-based margin k={MATCHED_K:.4g}",
    ]
    assert legend[:4] == [f"{arm} (n=1)" for arm in arms], "no cutout trial counted as vanilla"
    assert_baselines(axes, figure_sweeps["margin-scenes"], figure_sweeps["cutout-digits"])
    assert len(legend) == 4 + 4, (
        "32 px scenes and 16 px digits are evaluated differently: a pair of baselines each"
    )
    for run in runs_of(figure_sweeps["margin-scenes"]):
        params = run["params"]
        arm = (
            arms[0]
            if params["margin.mode"] == "none"
            else arms[1]
            if params["margin.mode"] == "fixed"
            else (arms[2] if float(params["margin.k"]) == 1.0 else arms[3])
        )
        drawn = line(axes, f"mean:{arm}")
        assert list(drawn.get_xdata()) == [step for step, _ in run["history"]]
        assert list(drawn.get_ydata()) == pytest.approx([value for _, value in run["history"]])


@pytest.mark.parametrize("source", SOURCES)
def test_learning_curves_cut_stopped_trials_short(search_sweep, source):
    sweep = load_sweep(search_sweep.name, search_sweep.directory.parent, source)
    (axes,) = axes_of(learning_curves_figure(sweep))
    assert_labelled(axes)
    runs = runs_of(search_sweep)
    assert any(run["status"] == "KILLED" for run in runs), (
        "the search sweep has ASHA-stopped trials"
    )
    for run in runs:
        drawn = line(axes, f"trial:{run['trial_id']}")
        assert list(drawn.get_xdata()) == [step for step, _ in run["history"]]
        assert list(drawn.get_ydata()) == pytest.approx([value for _, value in run["history"]])
        stopped = run["status"] == "KILLED"
        assert (drawn.get_linestyle() == "--") == stopped
        assert (len(run["history"]) < sweep.max_epochs) == stopped
    assert_baselines(axes, search_sweep)


@pytest.mark.parametrize("source", SOURCES)
def test_asha_stopped_trials_are_grey_crosses_at_their_last_score(search_sweep, source):
    """The search sweep's ASHA stops trials (the figure sweeps run every point to the end): on
    Fig. 2a each stopped run is a grey cross at its overlap and its last logged knn_top1, out of
    the mean, which the finished runs alone make."""
    sweep = load_sweep(search_sweep.name, search_sweep.directory.parent, source)
    (axes,) = axes_of(overlap_figure(sweep))
    runs = runs_of(search_sweep)
    stopped = sorted(
        (float(run["params"]["views.params.overlap"]), run["history"][-1][1])
        for run in runs
        if run["status"] == "KILLED"
    )
    assert stopped, "the search sweep has ASHA-stopped trials"
    crosses = line(axes, f"stopped:{SEARCH_DATASET}")
    drawn = sorted(zip(crosses.get_xdata(), crosses.get_ydata()))
    assert [x for x, _ in drawn] == pytest.approx([x for x, _ in stopped])
    assert [y for _, y in drawn] == pytest.approx([y for _, y in stopped])
    assert crosses.get_marker() == "x" and crosses.get_linestyle() == "None"
    red, green, blue = to_rgb(crosses.get_color())
    assert red == green == blue, "grey"
    assert crosses.get_label() == f"stopped early by ASHA ({len(stopped)})"
    assert_series(axes, SEARCH_DATASET, expected_points(search_sweep, "views.params.overlap"))


def test_importance_and_parallel_coordinates_come_from_the_optuna_study(figure_sweeps):
    sweep = sweep_of(figure_sweeps, "overlap-digits", source="parquet")
    study = load_study(sweep)
    importances = param_importances(study)
    assert set(importances) == {"views.params.overlap", "seed"}, (
        "the grid varies the overlap and the seed"
    )
    assert sum(importances.values()) == pytest.approx(1.0)
    (axes,) = axes_of(importance_figure(study))
    assert_labelled(axes)
    assert {label.get_text() for label in axes.get_yticklabels()} == set(importances)
    (axes,) = axes_of(parallel_coordinates_figure(study))
    assert [label.get_text() for label in axes.get_xticklabels()] == ["overlap", "knn_top1"]
    trial_lines = [artist for artist in axes.lines if str(artist.get_gid()).startswith("trial:")]
    assert len(trial_lines) == len(study.trials) == 4
    by_overlap = {trial.number: trial.params["views.params.overlap"] for trial in study.trials}
    for artist in trial_lines:
        overlap = by_overlap[int(artist.get_gid().split(":")[1])]
        assert artist.get_ydata()[0] == pytest.approx(0.0 if overlap == 0.3 else 1.0), (
            "overlap axis scaled to [0, 1]"
        )


def test_view_gallery_shows_each_setting_the_sweep_trained(figure_sweeps):
    sweep = sweep_of(figure_sweeps, "cutout-digits", source="mlflow")
    settings = gallery_settings(sweep.trials)
    assert [
        (
            family,
            params["fill"],
            params.get("blur") if params["fill"] == "blur" else None,
            params["hole"],
        )
        for family, params in settings
    ] == [("cutout", "blur", 0.5, 0.5), ("cutout", "blur", 1.0, 0.5), ("cutout", "zero", None, 0.5)]
    figure = gallery_figure(sweep)
    titles = [sub._suptitle.get_text() for sub in figure.subfigs]
    assert len(titles) == 3 and all("cutout" in title for title in titles)
    assert sum(1 for axes in figure.get_axes() if axes.get_gid() == "source") == 3 * 3


def test_realised_view_histograms_match_the_trained_overlaps(figure_sweeps):
    sweep = sweep_of(figure_sweeps, "overlap-digits", source="parquet")
    stats = view_stats(sweep)
    assert set(stats) == set(sweep.trials["trial_id"])
    all_axes = axes_of(realised_views_figure(stats, sweep.trials))
    axes_overlap, axes_crop_area = all_axes[0], all_axes[2]
    for axes in all_axes:
        assert_labelled(axes)
    for overlap in (0.3, 0.7):
        (stairs,) = [
            patch
            for patch in axes_overlap.patches
            if patch.get_gid() == f"hist:overlap:overlap: overlap={overlap}"
        ]
        values, edges = stairs.get_data().values, stairs.get_data().edges
        assert values.sum() == pytest.approx(1.0)
        mass = values[(edges[:-1] >= overlap - 0.06) & (edges[1:] <= overlap + 0.06)].sum()
        assert mass == pytest.approx(1.0), "every pair trained at this setting had this overlap"
        (crops,) = [
            patch
            for patch in axes_crop_area.patches
            if patch.get_gid() == f"hist:crop_area:overlap: overlap={overlap}"
        ]
        values, edges = crops.get_data().values, crops.get_data().edges
        assert values.sum() == pytest.approx(1.0)
        assert values[edges[1:] <= overlap - 1e-9].sum() == 0, (
            "a free crop contains the shared region"
        )
    trained = sum(sum(data["overlap"]) for data in stats.values())
    assert trained == 4 * 2 * 192, "every pair of every epoch of every trial is counted"


@pytest.mark.parametrize(
    ("draw", "name", "message"),
    [
        (
            overlap_figure,
            "patch-digits",
            "needs trials of the 'overlap' view family; this sweep has families ['patch']",
        ),
        (
            patch_figure,
            "overlap-digits",
            "needs trials of the 'patch' view family; this sweep has families ['overlap']",
        ),
        (overlap_vs_patch_figure, "overlap-digits", "'patch' view family"),
        (cutout_figure, "margin-scenes", "'cutout' view family"),
        (margin_figure, "overlap-digits", "at least two margin modes"),
    ],
)
def test_a_missing_family_is_a_clear_message_not_an_empty_plot(figure_sweeps, draw, name, message):
    with pytest.raises(MissingData, match="needs") as raised:
        draw(sweep_of(figure_sweeps, name, source="parquet"))
    assert message in str(raised.value)


@pytest.mark.parametrize("source", SOURCES)
def test_both_sources_read_the_baselines_the_parent_run_logged(figure_sweeps, source):
    for name, result in figure_sweeps.items():
        baselines = load_sweep(name, result.directory.parent, source).baselines
        _, untrained, pixels = logged_baselines(result)
        assert set(baselines.untrained.items()) == untrained
        assert {baselines.pixels} == pixels
        assert baselines.untrained_mean == pytest.approx(np.mean([value for _, value in untrained]))


def test_a_grid_has_the_untrained_encoder_of_each_of_its_seeds(figure_sweeps):
    """overlap-digits runs seeds 0 and 1: one untrained encoder each, as the science core
    computes it."""
    import json

    import pyarrow.parquet as pq

    from trainables.baselines import pixel_knn, untrained_knn
    from trainables.config import TrainConfig

    result = figure_sweeps["overlap-digits"]
    assert list(result.baselines.untrained) == [0, 1]
    config = TrainConfig.from_dict(
        json.loads(pq.read_table(result.trials_path)["config_json"][0].as_py())
    )
    for seed, value in result.baselines.untrained.items():
        assert untrained_knn(config.replace(seed=seed))["knn_top1"] == pytest.approx(value)
    assert pixel_knn(config)["knn_top1"] == pytest.approx(result.baselines.pixels)
