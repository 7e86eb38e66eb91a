"""Each benchmark runs end to end in its tiny smoke mode and prints its table (CI proves they
run; the numbers come from full runs, recorded in bench/RESULTS.md)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(module: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", module, "--smoke", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
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
        (size, pipeline) for size in ("32 px", "224 px") for pipeline in ("reference (torchvision, PIL)", *FAMILIES)
    ]
    assert all(float(rate.replace(",", "")) > 0 for _, _, rate, _ in rows)
