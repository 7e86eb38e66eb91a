"""Benchmark 3: kNN evaluation against its FLOP floor.

10k queries against a 50k bank of 512-d features, k=200, 100 classes: ``knn_topk_accuracy``
against one dense matrix product of the same shape (``queries @ bank.T``), timed side by side.
Target: at most 2x the floor, with peak extra memory under 1 GiB.

    .venv/bin/python -m bench.knn [--device cuda] [--smoke]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch

from bench.common import device_from, interleaved_seconds, machine, parser, table
from trainables.knn import knn_topk_accuracy

FULL = {"queries": 10_000, "bank": 50_000, "dim": 512, "classes": 100, "k": 200}
SMOKE = {"queries": 256, "bank": 2_048, "dim": 64, "classes": 10, "k": 20}
TARGET_RATIO = 2.0
TARGET_MEMORY_GIB = 1.0


def problem(sizes: dict[str, int], device: torch.device):
    generator = torch.Generator().manual_seed(0)
    queries = torch.randn(sizes["queries"], sizes["dim"], generator=generator).to(device)
    bank = torch.randn(sizes["bank"], sizes["dim"], generator=generator).to(device)
    query_labels = torch.randint(sizes["classes"], (sizes["queries"],), generator=generator).to(
        device
    )
    bank_labels = torch.randint(sizes["classes"], (sizes["bank"],), generator=generator).to(device)
    return queries, query_labels, bank, bank_labels


def run_knn(sizes, queries, query_labels, bank, bank_labels):
    return knn_topk_accuracy(
        queries, query_labels, bank, bank_labels, sizes["classes"], k=sizes["k"]
    )


def peak_extra_bytes(sizes: dict[str, int], device: torch.device) -> int:
    """Peak memory kNN needs beyond its inputs: CUDA's allocator peak, or on CPU the growth of
    the peak resident size of a fresh process (``--memory-child``)."""
    if device.type == "cuda":
        inputs = problem(sizes, device)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        run_knn(sizes, *inputs)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    smoke = ["--smoke"] if sizes is SMOKE else []
    output = subprocess.run(
        [sys.executable, "-m", "bench.knn", "--memory-child", *smoke],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(output.stdout.strip().splitlines()[-1])


def peak_resident_bytes() -> int:
    """This process image's peak resident size (``VmHWM``; unlike ``ru_maxrss`` it does not
    carry the parent's peak across fork + exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def memory_child(sizes: dict[str, int]) -> None:
    inputs = problem(sizes, torch.device("cpu"))
    # code paths loaded, on inputs of their own
    run_knn(SMOKE, *problem(SMOKE, torch.device("cpu")))
    before = peak_resident_bytes()
    run_knn(sizes, *inputs)
    print(peak_resident_bytes() - before)


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = arguments.parse_args()
    sizes = SMOKE if args.smoke else FULL
    if args.memory_child:
        memory_child(sizes)
        return
    device = device_from(args.device)
    queries, query_labels, bank, bank_labels = problem(sizes, device)
    seconds = interleaved_seconds(
        {
            "floor": lambda: queries @ bank.T,
            "knn": lambda: run_knn(sizes, queries, query_labels, bank, bank_labels),
        },
        device,
        repeats=1 if args.smoke else args.repeats,
    )
    extra = peak_extra_bytes(sizes, device)
    ratio = seconds["knn"] / seconds["floor"]
    shape = f"{sizes['queries']} x {sizes['bank']} x {sizes['dim']}, k={sizes['k']}"
    print(f"kNN benchmark on {machine(device)}: {shape}")
    print(
        table(
            [
                "device",
                "floor: one matmul (s)",
                "knn_topk_accuracy (s)",
                "ratio (target <= 2)",
                "peak extra memory (GiB, target < 1)",
            ],
            [
                [
                    device.type,
                    f"{seconds['floor']:.4g}",
                    f"{seconds['knn']:.4g}",
                    f"{ratio:.2f}",
                    f"{extra / 2**30:.3f}",
                ]
            ],
        )
    )


if __name__ == "__main__":
    main()
