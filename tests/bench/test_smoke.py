"""Each benchmark runs end to end in its tiny smoke mode and prints its table (CI proves they
run; the numbers come from full runs, recorded in bench/RESULTS.md). What a benchmark measures is
checked against what does not come from its own arithmetic: a direct computation of the same
result, the settings it was given, and bounds the design implies (a step that does more work is
not faster; a trial that does what an empty one does, and more, takes at least as long). Each
smoke run is a fresh Python process that imports torch, so they are marked ``slow``."""

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

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


def direct_knn_accuracy(queries, query_labels, bank, bank_labels, classes, k, temperature=0.1):
    """Weighted kNN top-1/top-5 written out in one piece: all queries at once, one-hot votes."""
    similarity = F.normalize(queries, dim=1) @ F.normalize(bank, dim=1).T
    top_similarity, top_index = similarity.topk(k, dim=1)
    weights = (top_similarity / temperature).exp()
    votes = (F.one_hot(bank_labels[top_index], classes).float() * weights[..., None]).sum(dim=1)
    ranked = votes.argsort(dim=1, descending=True)
    return {
        top: (ranked[:, :top] == query_labels[:, None]).any(dim=1).float().mean().item()
        for top in (1, 5)
    }


KNN_REPEATS = 9
"""Interleaved timings of the smoke problem for the median comparison (the smoke run times one)."""


@pytest.mark.slow
def test_knn_benchmark_times_the_right_knn_and_finds_it_slower_than_its_floor():
    from bench.common import interleaved_seconds
    from bench.knn import SMOKE, TARGET_MEMORY_GIB, problem, run_knn

    cpu = torch.device("cpu")
    queries, query_labels, bank, bank_labels = problem(SMOKE, cpu)
    timed = run_knn(SMOKE, queries, query_labels, bank, bank_labels)
    assert timed == direct_knn_accuracy(
        queries, query_labels, bank, bank_labels, SMOKE["classes"], SMOKE["k"]
    ), "the benchmark times kNN with its problem's k and classes"
    seconds = interleaved_seconds(
        {
            "floor": lambda: queries @ bank.T,
            "knn": lambda: run_knn(SMOKE, queries, query_labels, bank, bank_labels),
        },
        cpu,
        repeats=KNN_REPEATS,
    )
    assert seconds["knn"] > seconds["floor"], "kNN does the floor's matrix product and more"

    output = run_benchmark("bench.knn", "--device", "cpu")
    assert f"{SMOKE['queries']} x {SMOKE['bank']} x {SMOKE['dim']}, k={SMOKE['k']}" in output
    (row,) = table_rows(output)
    device, floor, knn, ratio, memory = row
    assert device == "cpu" and float(floor) > 0 and float(knn) > 0 and float(ratio) > 0
    assert 0 <= float(memory) < TARGET_MEMORY_GIB


@pytest.mark.slow
def test_view_benchmark_covers_every_family_at_both_sizes():
    from bench.views import FAMILIES

    rows = table_rows(run_benchmark("bench.views", "--device", "cpu", "--workers", "0"))
    assert [(size, pipeline) for size, pipeline, *_ in rows] == [
        (size, pipeline)
        for size in ("32 px", "224 px")
        for pipeline in ("reference (torchvision, PIL)", *FAMILIES)
    ]
    assert all(float(rate.replace(",", "")) > 0 for _, _, rate, _ in rows)


@pytest.mark.slow
def test_training_benchmark_compares_the_full_step_with_the_model_only_step():
    from bench.training import SMOKE_SETTINGS

    rows = table_rows(run_benchmark("bench.training", "--device", "cpu"))
    assert [tuple(row[:4]) for row in rows] == [
        (
            setting.name,
            "small",
            f"{setting.overrides['views.size']} px",
            str(setting.overrides["batch_size"]),
        )
        for setting in SMOKE_SETTINGS
    ]
    # One timed pass each: on 2 shared cores its noise (up to 10x) swamps the 4-20% by which the
    # full step is slower, so the passes' equivalence is checked below instead of their rates.
    for *_, full, model, ratio, compiled in rows:
        assert float(full.replace(",", "")) > 0 and float(model.replace(",", "")) > 0
        assert float(ratio) > 0 and compiled == "-"


def test_the_model_only_step_is_the_full_step_without_making_the_views():
    """Both passes of the training benchmark, from the same model and optimizer state, leave the
    same weights: the model-only pass times exactly the step of the full one."""
    from bench.training import SMOKE_SETTINGS, configure, full_pass, model_pass, prepared_views
    from trainables.data import get_dataset
    from trainables.model import SimSiam
    from trainables.pipeline import TwoViewTransform
    from trainables.train import Runtime, build_optimizer

    setting = SMOKE_SETTINGS[0]
    cpu = torch.device("cpu")
    config, runtime = configure(setting, cpu), Runtime(cpu)
    torch.manual_seed(config.seed)
    model = SimSiam(config.model)
    optimizer = build_optimizer(model, config)
    twin = copy.deepcopy(model)
    twin_optimizer = build_optimizer(twin, config)
    twin_optimizer.load_state_dict(optimizer.state_dict())
    dataset = get_dataset(setting.dataset, split="train")
    indices = torch.arange(setting.steps * config.batch_size)
    transform = TwoViewTransform(config.views.build(), config.photometric)
    start = copy.deepcopy(model.state_dict())
    full_pass(model, optimizer, dataset, indices, transform, config, runtime)
    prepared = prepared_views(dataset, indices, transform, config, runtime)
    model_pass(twin, twin_optimizer, prepared, runtime)
    after_full, after_model = model.state_dict(), twin.state_dict()
    assert any(not torch.equal(after_full[key], start[key]) for key in start), "the pass trained"
    assert all(torch.equal(after_full[key], after_model[key]) for key in after_full), (
        "the same weights after either pass"
    )


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


@pytest.mark.ray
@pytest.mark.extended
def test_trial_overhead_benchmark_breaks_down_each_trial_and_measures_rays_floor():
    from bench.trial_overhead import PHASES

    output = run_benchmark("bench.trial_overhead")
    phases, side_by_side = tables(output)
    names = [row[0] for row in phases]
    assert names[: len(PHASES)] == [name for name, _, _ in PHASES]
    by_name = {row[0]: [float(value) for value in row[1:]] for row in phases}
    rounding = 0.005 * (len(PHASES) + 2)  # each value is printed to 0.01
    for trial in range(len(by_name["overhead"]) - 1):  # each trial (the last column: the median)
        spans = [by_name[name][trial] for name, _, _ in PHASES]
        assert min(spans) >= 0, "each phase ends after it starts (marks of different processes)"
        compute, total = (
            by_name["compute (excluded)"][trial],
            by_name["start to first report"][trial],
        )
        assert compute > 0, "the epoch trained and scored"
        assert sum(spans) + compute <= total + rounding, "the phases are disjoint parts of it"
    assert [row[0] for row in side_by_side] == ["1", "2", "median"]
    ours, floor = ([float(row[column]) for row in side_by_side] for column in (1, 2))
    assert all(value > 0 for value in floor), "the empty TorchTrainer's start to first report"
    assert ours[-1] >= floor[-1], (
        "our trial does what the empty one does (Tune trial, TorchTrainer, report) and more"
    )


def test_a_sweep_reaches_a_target_after_the_epochs_logged_before_its_first_report_of_it():
    """Search efficiency's count, on reports whose answer is known: epochs are counted in the
    order the driver logged them, across trials, up to the first report at the target."""
    from bench.search_efficiency import Report, epochs_to_reach, fraction_row

    reports = [
        Report(logged_ms=10, trial="a", epoch=1, knn_top1=0.30),
        Report(logged_ms=20, trial="b", epoch=1, knn_top1=0.42),
        Report(logged_ms=30, trial="a", epoch=2, knn_top1=0.55),
        Report(logged_ms=40, trial="b", epoch=2, knn_top1=0.61),
    ]
    assert epochs_to_reach(reports, 0.5) == 3
    assert epochs_to_reach(reports, 0.3) == 1
    assert epochs_to_reach(reports, 0.7) is None
    row, fraction = fraction_row("search", reports, 0.5, grid_epochs=12)
    assert row == ["search", "2", "4", "0.6100", "3", "0.25"] and fraction == 0.25
    row, fraction = fraction_row("search", reports, 0.7, grid_epochs=12)
    assert row[4:] == ["not reached", "-"] and fraction is None


SMOKE_SEARCH = {
    # what `bench.search_efficiency --smoke` runs: one epoch per trial, small data, seed 0
    "dataset": "patterns",
    "epochs": 1,
    "seeds": (0,),
    "overrides": {"data.limit": 128, "data.eval_limit": 128, "knn.k": 10},
}
SMOKE_SEARCH_TRIALS = 2
PRINTED = 5e-5
"""Half the last printed digit of a score (4 decimals)."""


@pytest.mark.ray
@pytest.mark.extended
def test_search_efficiency_benchmark_compares_asha_tpe_with_the_grid():
    from study.config import StudyConfig, plan
    from trainables.baselines import pixel_knn, untrained_knn

    output = run_benchmark("bench.search_efficiency")
    (grid,), (search,) = tables(output)  # the grid's table as soon as it ends, then the searches'
    baselines = re.search(
        r"^baselines: untrained encoder (0\.\d{4}) \(seed 0\), raw pixels (0\.\d{4})$",
        output,
        re.M,
    )
    assert baselines, output
    base = plan(StudyConfig(space="overlap", grid=True, **SMOKE_SEARCH)).base_config
    assert float(baselines[1]) == pytest.approx(
        untrained_knn(base.replace(seed=0))["knn_top1"], abs=PRINTED
    ), "the sweep's untrained encoder, scored here directly"
    assert float(baselines[2]) == pytest.approx(pixel_knn(base)["knn_top1"], abs=PRINTED)
    assert re.search(r"^searcher seed 0: ", output, re.M), "each search's row as it ends"
    assert grid[0].startswith("grid") and search[0].startswith("ASHA + TPE")
    assert grid[1:3] == ["2", "2"], "two grid points, one epoch each"
    assert search[1:3] == [str(SMOKE_SEARCH_TRIALS)] * 2, "two trials; none stops before epoch 1"
    target = float(re.search(r"target: a report of at least (-?\d\.\d{4})$", output, re.M)[1])
    for sweep, _trials, epochs, best, reached, _fraction in (grid, search):
        assert 0 <= float(best) <= 1, sweep
        if float(best) >= target + PRINTED:
            assert 1 <= int(reached) <= int(epochs), f"{sweep} reported the target"
        elif float(best) < target - PRINTED:
            assert reached == "not reached", f"{sweep} never reported the target"


@pytest.mark.slow
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


@pytest.mark.slow
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
