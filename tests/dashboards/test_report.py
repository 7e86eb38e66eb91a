"""``study report``: PNGs and a self-contained HTML page, logged to the sweep's parent run, and
the page as headless Chromium draws it."""

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from matplotlib.image import imread
from mlflow.tracking import MlflowClient

from dashboards.figures import COLOURS
from study_cli.commands import main

pytestmark = pytest.mark.ray

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking")
WIDTH, HEIGHT = 1200, 9000


@pytest.fixture(scope="module")
def report(figure_sweeps):
    result = figure_sweeps["overlap-digits"]
    storage = str(result.directory.parent)
    assert (
        main(
            [
                "report",
                "overlap-digits",
                "--with",
                "overlap-scenes",
                "patch-digits",
                "--storage",
                storage,
            ]
        )
        == 0
    )
    return result, result.directory / "report"


def test_report_command_writes_every_figure_it_has_data_for(report):
    result, directory = report
    drawn = {path.stem for path in directory.glob("*.png")}
    assert drawn == {
        "fig2a_overlap",
        "fig2b_patch",
        "fig2c_overlap_vs_patch",
        "learning_curves",
        "param_importance",
        "parallel_coordinates",
        "view_gallery",
        "realised_views",
    }
    page = (directory / "report.html").read_text()
    for name in ("fig3_exclusive", "fig4_cutout", "fig5_margin"):
        assert f'id="missing-{name}"' in page
    assert "needs trials of the &#x27;exclusive&#x27; view family" in page


def test_the_page_is_self_contained_and_in_context(report):
    result, directory = report
    page = (directory / "report.html").read_text()
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert sources and all(source.startswith("data:image/png;base64,") for source in sources), (
        "no fetches, no links out"
    )
    assert "default-src 'none'" in page and "<script" not in page
    assert page.count("<figure") == 8
    for heading in ("Question", "Space", "Best configuration", "Trials"):
        assert f"<h2>{heading}</h2>" in page
    assert "views.params.overlap" in page and "0.3, 0.7" in page
    rows = re.findall(r"<tr><td>", page)
    assert len(rows) == 4 + 2 + 2, "one row per trial of the three sweeps"


def test_the_report_is_logged_to_the_parent_run(report):
    result, directory = report
    client = MlflowClient(result.tracking.tracking_uri)
    logged = {
        artifact.path for artifact in client.list_artifacts(result.tracking.parent_run_id, "report")
    }
    assert logged == {f"report/{path.name}" for path in directory.iterdir()}


def colour_pixels(image, hex_colour, tolerance=0.06):
    rgb = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(image[..., :3] - rgb).max(axis=-1) < tolerance).sum())


@pytest.mark.skipif(
    shutil.which("chromium") is None and not os.environ.get("CI"),
    reason="needs Debian's chromium (make test installs it; required under CI)",
)
def test_headless_chromium_draws_the_figures(report, tmp_path):
    _, directory = report
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            "chromium",
            *CHROMIUM_FLAGS,
            "--hide-scrollbars",
            f"--window-size={WIDTH},{HEIGHT}",
            f"--screenshot={shot}",
            (directory / "report.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    image = imread(shot)
    assert image.shape[:2] == (HEIGHT, WIDTH)
    # The page's own text and rules are black and grey: coloured pixels come from the figures.
    assert colour_pixels(image, COLOURS[0]) > 2000, (
        "the first series colour (lines, bars) is on the page"
    )
    assert colour_pixels(image, COLOURS[1]) > 500, "so is the second"
    blank = tmp_path / "blank.html"
    blank.write_text(
        re.sub(
            r'src="data:image/png;base64,[^"]*"', 'src=""', (directory / "report.html").read_text()
        )
    )
    subprocess.run(
        [
            "chromium",
            *CHROMIUM_FLAGS,
            "--hide-scrollbars",
            f"--window-size={WIDTH},{HEIGHT}",
            f"--screenshot={tmp_path / 'blank.png'}",
            blank.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert colour_pixels(imread(tmp_path / "blank.png"), COLOURS[0]) < 50, (
        "the same page without its images has none"
    )


def test_the_page_states_the_baselines_and_the_best_trials_margins(report, figure_sweeps):
    """The best finished trial of the three sweeps, against its own seed's untrained encoder, the
    mean over the seeds and the raw pixels, all as the parent runs logged them."""
    from study.vocabulary import PIXELS_METRIC, UNTRAINED_METRIC

    _, directory = report
    page = (directory / "report.html").read_text()
    results = [figure_sweeps[name] for name in ("overlap-digits", "overlap-scenes", "patch-digits")]
    untrained, pixels = set(), set()
    for result in results:
        client = MlflowClient(result.tracking.tracking_uri)
        untrained |= {
            (point.step, point.value)
            for point in client.get_metric_history(result.tracking.parent_run_id, UNTRAINED_METRIC)
        }
        pixels |= {
            point.value
            for point in client.get_metric_history(result.tracking.parent_run_id, PIXELS_METRIC)
        }
    assert len(pixels) == 1 and {seed for seed, _ in untrained} == {0, 1}, (
        "one eval setting; seeds 0 and 1"
    )
    (pixel,), by_seed = pixels, dict(untrained)
    mean = np.mean(list(by_seed.values()))
    finished = [
        row
        for result in results
        for row in result.trials.to_pylist()
        if row["status"] == "FINISHED"
    ]
    score = max(row["final_knn_top1"] for row in finished)
    seeds = {
        json.loads(row["config_json"])["seed"] for row in finished if row["final_knn_top1"] == score
    }  # ties: any of them
    section = page[page.index("<h2>Baselines</h2>") :]
    section = section[: section.index("<h2>", 4)]
    assert f"untrained encoder {mean:.3f} (seeds 0,1: {by_seed[0]:.3f}/{by_seed[1]:.3f})" in section
    assert f"raw pixels {pixel:.3f}" in section
    assert any(
        f"best {score:.3f} = untrained {score - by_seed[seed]:+.3f} "
        f"(seed {seed}; mean {score - mean:+.3f})" in section
        for seed in seeds
    )
    assert f"pixels {score - pixel:+.3f}" in section
    assert (
        page.index("<h2>Best configuration</h2>")
        < page.index("<h2>Baselines</h2>")
        < page.index("<h2>Figures</h2>")
    )


def parquet_trials(result):
    """A sweep's trials straight from its Parquet export: status, final score, seed and views."""
    import pandas as pd

    table = pd.read_parquet(result.directory / "results" / "trials.parquet")
    configs = [json.loads(text) for text in table["config_json"]]
    return table.assign(
        seed=[config["seed"] for config in configs],
        params=[config["views"]["params"] for config in configs],
        margin=[config["margin"]["mode"] for config in configs],
        margin_k=[config["margin"]["k"] for config in configs],
    )


def comparison_rows(page):
    """(figure, setting, arm) -> the cells of the report's paired-comparison row."""
    import html

    rows = {}
    for attributes, cells in re.findall(r'<tr class="comparison" ([^>]*)>(.*?)</tr>', page):
        keys = dict(re.findall(r'data-(\w+)="([^"]*)"', attributes))
        rows[tuple(html.unescape(keys[name]) for name in ("figure", "setting", "arm"))] = [
            html.unescape(cell) for cell in re.findall(r"<td>(.*?)</td>", cells)
        ]
    return rows


def expected_paired(first, second):
    """b - a over the seeds both have (scipy's paired t-test), from two {seed: score} maps."""
    from scipy import stats

    seeds = sorted(set(first) & set(second))
    a, b = np.array([first[seed] for seed in seeds]), np.array([second[seed] for seed in seeds])
    if len(seeds) < 2:
        return len(seeds), float(np.mean(b - a)), None
    test = stats.ttest_rel(b, a)
    return len(seeds), float(np.mean(b - a)), (*test.confidence_interval(0.95), test.pvalue)


def assert_row(cells, pairs, difference, tested, baseline):
    setting, arm, against, seeds, shown, interval, p_value, words = cells
    assert (against, int(seeds)) == (baseline, pairs)
    assert float(shown) == pytest.approx(difference, abs=6e-5)
    if tested is None:
        assert p_value == "–" and "not testable" in words
    else:
        low, high, p = tested
        assert [float(value) for value in interval.split(" to ")] == pytest.approx(
            [low, high], abs=6e-5
        )
        assert float(p_value) == pytest.approx(p, rel=1e-2)
        assert words.endswith("outside noise." if low > 0 or high < 0 else "within noise.")


def test_the_page_compares_each_point_with_the_best_pairing_seeds(report, figure_sweeps):
    _, directory = report
    page = (directory / "report.html").read_text()
    rows = comparison_rows(page)
    verdicts = dict(re.findall(r'<p class="verdict" data-figure="([^"]*)">(.*?)</p>', page))
    outside = []
    for figure, name, setting, param in (
        ("Fig. 2a", "overlap-digits", "digits", "overlap"),
        ("Fig. 2a", "overlap-scenes", "digit-scenes → kNN digits", "overlap"),
        ("Fig. 2b", "patch-digits", "digits", "patch"),
    ):
        trials = parquet_trials(figure_sweeps[name])
        trials = trials[trials["status"] == "FINISHED"].assign(
            x=[params[param] for params in trials["params"]]
        )
        by_x = {
            x: dict(zip(group["seed"], group["final_knn_top1"])) for x, group in trials.groupby("x")
        }
        best = max(by_x, key=lambda x: np.mean(list(by_x[x].values())))
        for x, scores in by_x.items():
            if x == best:
                assert (figure, setting, f"{param} {x:g}") not in rows, (
                    "the best is not compared with itself"
                )
                continue
            pairs, difference, tested = expected_paired(by_x[best], scores)
            assert pairs == (2 if name == "overlap-digits" else 1)
            assert_row(
                rows[(figure, setting, f"{param} {x:g}")],
                pairs,
                difference,
                tested,
                f"the best {param} {best:g}",
            )
            if tested is not None and (tested[0] > 0 or tested[1] < 0):
                outside.append(figure)
    assert len([key for key in rows if key[0] in ("Fig. 2a", "Fig. 2b")]) == 3
    assert verdicts["Fig. 2b"].startswith("No difference in Fig. 2b can be tested")
    if "Fig. 2a" in outside:
        assert verdicts["Fig. 2a"].startswith(
            "In Fig. 2a, 1 of 1 tested differences are outside noise"
        )
    else:
        assert verdicts["Fig. 2a"] == (
            "All testable differences in Fig. 2a are within noise: "
            "no point&#x27;s 95% interval of the paired difference to the best excludes 0 "
            "(1 of 2 cannot be tested: fewer than 2 matched seeds)."
        )
    assert (
        "Not compared for this sweep: Fig. 3 (no exclusive trials), Fig. 4 (no cutout trials), "
        "Fig. 5 (fewer than two margin modes)." in page
    )


def test_cutout_and_margin_arms_are_compared_seed_by_seed(figure_sweeps):
    from dashboards.comparisons import sweep_comparisons
    from dashboards.series import MissingData, cutout_arm
    from dashboards.sweeps import combine, load_sweep

    storage = figure_sweeps["cutout-digits"].directory.parent
    sweep = combine([load_sweep(name, storage) for name in ("cutout-digits", "margin-scenes")])
    found = dict(sweep_comparisons(sweep))
    cutout = parquet_trials(figure_sweeps["cutout-digits"])
    arms = cutout["params"].map(lambda params: cutout_arm(params["fill"], params.get("blur")))
    by_arm = {
        arm: dict(zip(group["seed"], group["final_knn_top1"]))
        for arm, group in cutout.groupby(arms)
    }
    half, whole = found["Fig. 4"].comparisons
    assert [(item.setting, item.baseline, item.arm) for item in (half, whole)] == [
        ("digits, cutout size 0.5", "cutout", "cutout-blur 0.5"),
        ("digits, cutout size 0.5", "cutout", "cutout-blur 1"),
    ]
    for item in (half, whole):
        assert (item.result.pairs, item.result.difference) == pytest.approx(
            (1, by_arm[item.arm][0] - by_arm["cutout"][0])
        )
    margins = parquet_trials(figure_sweeps["margin-scenes"])

    def arm_of(mode, k):
        return mode if mode != "distance" else f"distance k={k:.4g}"

    by_arm = {
        arm_of(mode, k): score
        for mode, k, score in zip(margins["margin"], margins["margin_k"], margins["final_knn_top1"])
    }
    (matched,) = [arm for arm in by_arm if arm.startswith("distance") and arm != "distance k=1"]
    names = {
        "none": "vanilla",
        "fixed": "fixed margin",
        "distance k=1": "distance-based margin k=1",
        matched: f"distance-based margin {matched.removeprefix('distance ')}",
    }
    order = ["none", "fixed", "distance k=1", matched]
    expected = [(a, b) for index, a in enumerate(order) for b in order[index + 1 :]]
    assert [
        (item.baseline, item.arm, item.result.pairs) for item in found["Fig. 5"].comparisons
    ] == [(names[a], names[b], 1) for a, b in expected]
    assert [item.result.difference for item in found["Fig. 5"].comparisons] == pytest.approx(
        [by_arm[b] - by_arm[a] for a, b in expected]
    )
    assert found["Fig. 5"].summary().startswith("No difference in Fig. 5 can be tested")
    assert isinstance(found["Fig. 2a"], MissingData)
    assert "'overlap' view family" in str(found["Fig. 2a"])


def grace_correlation(result, epoch):
    """Spearman's rho (scipy) of knn_top1 at ``epoch`` with the last epoch's, over the trials that
    ran every epoch, from the Parquet tables; and how many there are."""
    import pandas as pd
    from scipy import stats

    trials = pd.read_parquet(result.directory / "results" / "trials.parquet")
    epochs = pd.read_parquet(result.directory / "results" / "epochs.parquet")
    finished = set(trials.loc[trials["status"] == "FINISHED", "trial_id"])
    history = epochs[epochs["trial_id"].isin(finished)].pivot(
        index="trial_id", columns="epoch", values="knn_top1"
    )
    rho = (
        stats.spearmanr(history[epoch], history[history.columns.max()]).statistic
        if len(history) >= 3
        else float("nan")
    )
    return rho, len(history)


def test_the_page_and_the_parent_run_check_early_stopping_on_a_grid(report, figure_sweeps):
    """A grid runs every point to the end; the check says how ASHA's grace-period ranking
    would have held."""
    from study.vocabulary import (
        EARLY_STOPPING_TAG,
        RANK_CORRELATION_METRIC,
        RANK_CORRELATION_TRIALS_METRIC,
        RUNG_EPOCHS_TAG,
    )

    result, directory = report
    page = (directory / "report.html").read_text()
    assert "no early stopping: every trial runs to the last epoch" in page
    assert all(
        row["status"] == "FINISHED" and row["epochs_run"] == 2 for row in result.trials.to_pylist()
    ), "no grid trial stopped"
    rho, finished = grace_correlation(result, 1)
    assert finished == 4
    section = page[page.index("<h2>Early stopping</h2>") :]
    section = section[: section.index("<h2>", 4)]
    assert "ran every trial to the last epoch" in section and "over all 4 trials" in section
    (cells,) = re.findall(
        r'<tr class="rung" data-epoch="1"><td>1</td><td>4</td><td>(.*?)</td></tr>', section
    )
    parent = MlflowClient(result.tracking.tracking_uri).get_run(result.tracking.parent_run_id).data
    assert parent.tags[RUNG_EPOCHS_TAG] == "1" and parent.tags[EARLY_STOPPING_TAG] == "off"
    assert parent.metrics[RANK_CORRELATION_TRIALS_METRIC] == 4
    if rho == rho:
        assert float(cells) == pytest.approx(rho, abs=5e-4)
        assert parent.metrics[RANK_CORRELATION_METRIC] == pytest.approx(rho)
        assert ('id="early-stopping-warning"' in section) == (rho < 0.5)
    else:  # tied scores
        assert cells == "cannot be computed" and RANK_CORRELATION_METRIC not in parent.metrics
        assert 'id="early-stopping-warning"' in section


def test_a_search_records_the_rank_correlation_of_its_survivors(search_sweep):
    from dashboards.early_stopping import early_stopping_html
    from dashboards.sweeps import load_sweep
    from study.vocabulary import (
        EARLY_STOPPING_TAG,
        RANK_CORRELATION_METRIC,
        RANK_CORRELATION_TRIALS_METRIC,
        RUNG_EPOCHS_TAG,
    )

    rho, finished = grace_correlation(search_sweep, 1)
    parent = (
        MlflowClient(search_sweep.tracking.tracking_uri)
        .get_run(search_sweep.tracking.parent_run_id)
        .data
    )
    assert parent.tags[RUNG_EPOCHS_TAG] == "1" and parent.tags[EARLY_STOPPING_TAG] == "asha", (
        "grace 1, factor 4, 3 epochs"
    )
    assert parent.metrics[RANK_CORRELATION_TRIALS_METRIC] == finished
    section = early_stopping_html(load_sweep(search_sweep.name, search_sweep.directory.parent))
    assert (
        "ASHA stopped trials early" in section
        and f"Over the {finished} trials that ran all 3 epochs" in section
    )
    if finished < 3:
        assert RANK_CORRELATION_METRIC not in parent.metrics
        assert f"cannot be computed: only {finished} trial" in section
    elif rho == rho:
        assert parent.metrics[RANK_CORRELATION_METRIC] == pytest.approx(rho)
        assert ("Warning" in section) == (rho < 0.5)
