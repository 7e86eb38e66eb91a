"""Each benchmark runs end to end in its tiny smoke mode and prints its table (CI proves they
run; the numbers come from full runs, recorded in bench/RESULTS.md)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(module: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", module, "--smoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def table_rows(output: str) -> list[list[str]]:
    lines = [line for line in output.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_knn_benchmark_prints_its_ratio_and_memory():
    (row,) = table_rows(run_benchmark("bench.knn", "--device", "cpu"))
    device, floor, knn, ratio, memory = row
    assert device == "cpu" and float(floor) > 0 and float(knn) > 0
    assert float(ratio) == pytest.approx(float(knn) / float(floor), rel=0.05, abs=0.02)
    assert 0 <= float(memory) < 1


def test_view_benchmark_covers_every_family_at_both_sizes():
    from bench.views import FAMILIES

    rows = table_rows(run_benchmark("bench.views", "--device", "cpu", "--workers", "0"))
    assert [(size, pipeline) for size, pipeline, *_ in rows] == [
        (size, pipeline)
        for size in ("32 px", "224 px")
        for pipeline in ("reference (torchvision, PIL)", *FAMILIES)
    ]
    assert all(float(rate.replace(",", "")) > 0 for _, _, rate, _ in rows)


def test_training_benchmark_compares_the_full_step_with_the_model_only_step():
    from bench.training import SMOKE_SETTINGS

    rows = table_rows(run_benchmark("bench.training", "--device", "cpu"))
    assert [(name, backbone) for name, backbone, *_ in rows] == [
        (setting.name, "small") for setting in SMOKE_SETTINGS
    ]
    for _, _, views, batch, full, model, ratio, compiled in rows:
        assert views.endswith(" px") and int(batch) > 0
        full, model = float(full.replace(",", "")), float(model.replace(",", ""))
        assert full > 0 and model > 0
        assert float(ratio) == pytest.approx(full / model, rel=0.05, abs=0.02)
        assert compiled == "-"


def tables(output: str) -> list[list[list[str]]]:
    """Every markdown table of the output: its rows (header and rule left out)."""
    found: list[list[str]] = []
    blocks, current = [], []
    for line in [*output.splitlines(), ""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    for block in blocks:
        found.append([[cell.strip() for cell in line.strip("|").split("|")] for line in block[2:]])
    return found


def test_trial_overhead_benchmark_breaks_down_each_trial_and_measures_rays_floor():
    from bench.trial_overhead import PHASES

    output = run_benchmark("bench.trial_overhead")
    phases, side_by_side = tables(output)
    names = [row[0] for row in phases]
    assert names[: len(PHASES)] == [name for name, _, _ in PHASES]
    by_name = {row[0]: [float(value) for value in row[1:]] for row in phases}
    for total, compute, overhead in zip(
        by_name["start to first report"], by_name["compute (excluded)"], by_name["overhead"]
    ):
        assert overhead == pytest.approx(total - compute, abs=0.02) and overhead > 0
    assert [row[0] for row in side_by_side] == ["1", "2", "median"]
    assert all(float(row[2]) > 0 for row in side_by_side), (
        "the empty TorchTrainer's start to first report"
    )


def test_search_efficiency_benchmark_compares_asha_tpe_with_the_grid():
    output = run_benchmark("bench.search_efficiency")
    (grid,), (search,) = tables(output)  # the grid's table as soon as it ends, then the searches'
    assert re.search(
        r"^baselines: untrained encoder 0\.\d{4} \(seed 0\), raw pixels 0\.\d{4}$", output, re.M
    )
    assert re.search(r"^searcher seed 0: ", output, re.M), "each search's row as it ends"
    assert grid[0].startswith("grid") and search[0].startswith("ASHA + TPE")
    assert grid[1:3] == ["2", "2"], "two grid points, one epoch each"
    assert int(search[2]) <= 2
    assert grid[4] != "not reached", "the grid reaches its own best"


def test_learning_benchmark_tables_each_seed_against_both_baselines():
    from bench.learning import SMOKE
    from trainables.baselines import pixel_knn, untrained_knn
    from trainables.recipes import recipe

    output = run_benchmark(
        "bench.learning", "--seeds", "0", "1", "--device", "cpu", "--set", "optim.base_lr=0.25"
    )
    assert "patterns recipe, optim.base_lr=0.25:" in output
    rows = table_rows(output)
    assert [row[0] for row in rows] == ["0", "1"]
    config = recipe("patterns", **SMOKE, device="cpu")
    for seed, untrained, pixels, trained, above_untrained, above_pixels, minutes, curve in rows:
        assert float(untrained) == pytest.approx(
            untrained_knn(config.replace(seed=int(seed)))["knn_top1"], abs=5e-5
        )
        assert float(pixels) == pytest.approx(pixel_knn(config)["knn_top1"], abs=5e-5)
        assert float(above_untrained) == pytest.approx(float(trained) - float(untrained), abs=2e-4)
        assert float(above_pixels) == pytest.approx(float(trained) - float(pixels), abs=2e-4)
        assert float(minutes) >= 0 and curve == f"1:{float(trained):.3f}"


def test_view_distribution_benchmark_tables_every_grid_point_on_both_image_shapes():
    output = run_benchmark("bench.view_distributions")
    assert "## 96x96 images" in output and "## 480x640 images" in output
    rows = [
        line
        for line in output.splitlines()
        if line.startswith("| ") and not line.startswith("| family")
    ]
    from bench.view_distributions import points
    from search_spaces import get_space
    from trainables.recipes import recipe

    per_shape = len(list(points()))
    assert (
        per_shape
        == 2
        + sum(
            len(get_space(space).grid(recipe("cifar")))
            for space in ("overlap", "patch", "exclusive", "cutout")
        )
        + 9
        + 3
    )
    assert len(rows) == 2 * per_shape
    overlap_01 = next(row for row in rows if row.startswith("| overlap | overlap=0.1 |"))
    area_median = float(overlap_01.split("|")[3].split()[0])
    assert 0.1 <= area_median <= 1, "overlap crops contain their shared area"
