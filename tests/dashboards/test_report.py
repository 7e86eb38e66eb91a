"""``study report``: PNGs and a self-contained HTML page, logged to the sweep's parent run, and
the page as headless Chromium draws it."""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from matplotlib.image import imread
from mlflow.tracking import MlflowClient

from dashboards.figures import COLOURS
from study.cli import main

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking")
WIDTH, HEIGHT = 1200, 9000


@pytest.fixture(scope="module")
def report(figure_sweeps):
    result = figure_sweeps["overlap-digits"]
    storage = str(result.directory.parent)
    assert main(["report", "overlap-digits", "--with", "overlap-scenes", "patch-digits", "--storage", storage]) == 0
    return result, result.directory / "report"


def test_report_command_writes_every_figure_it_has_data_for(report):
    result, directory = report
    drawn = {path.stem for path in directory.glob("*.png")}
    assert drawn == {
        "fig2a_overlap", "fig2b_patch", "fig2c_overlap_vs_patch", "learning_curves",
        "param_importance", "parallel_coordinates", "view_gallery", "realised_views",
    }
    page = (directory / "report.html").read_text()
    for name in ("fig3_exclusive", "fig4_cutout", "fig5_margin"):
        assert f'id="missing-{name}"' in page
    assert "needs trials of the &#x27;exclusive&#x27; view family" in page


def test_the_page_is_self_contained_and_in_context(report):
    result, directory = report
    page = (directory / "report.html").read_text()
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert sources and all(source.startswith("data:image/png;base64,") for source in sources), "no fetches, no links out"
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
    logged = {artifact.path for artifact in client.list_artifacts(result.tracking.parent_run_id, "report")}
    assert logged == {f"report/{path.name}" for path in directory.iterdir()}


def colour_pixels(image, hex_colour, tolerance=0.06):
    rgb = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(image[..., :3] - rgb).max(axis=-1) < tolerance).sum())


@pytest.mark.skipif(
    shutil.which("chromium") is None and not os.environ.get("CI"), reason="needs Debian's chromium (make test installs it; required under CI)"
)
def test_headless_chromium_draws_the_figures(report, tmp_path):
    _, directory = report
    shot = tmp_path / "report.png"
    subprocess.run(
        ["chromium", *CHROMIUM_FLAGS, "--hide-scrollbars", f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={shot}",
         (directory / "report.html").as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    image = imread(shot)
    assert image.shape[:2] == (HEIGHT, WIDTH)
    # The page's own text and rules are black and grey: coloured pixels come from the figures.
    assert colour_pixels(image, COLOURS[0]) > 2000, "the first series colour (lines, bars) is on the page"
    assert colour_pixels(image, COLOURS[1]) > 500, "so is the second"
    blank = tmp_path / "blank.html"
    blank.write_text(re.sub(r'src="data:image/png;base64,[^"]*"', 'src=""', (directory / "report.html").read_text()))
    subprocess.run(
        ["chromium", *CHROMIUM_FLAGS, "--hide-scrollbars", f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={tmp_path / 'blank.png'}",
         blank.as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    assert colour_pixels(imread(tmp_path / "blank.png"), COLOURS[0]) < 50, "the same page without its images has none"
