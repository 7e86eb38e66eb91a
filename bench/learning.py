"""Benchmark 6: does SimSiam learn on the bundled benchmark, and by how much?

Trains the ``patterns`` recipe (random crops, the ``small`` CNN, 32 px) once per seed and puts
each run's final kNN top-1 beside the two baselines every claim is measured against: the
untrained encoder of the same seed and raw-pixel kNN, on the same evaluation set with the same
k and temperature. Targets (issue 14): trained at least 0.15 above the untrained encoder and
0.10 above raw pixels, standard deviation over 3 seeds at most 0.015, at most 10 minutes per
run on 2 CPU cores.

    .venv/bin/python -m bench.learning [--seeds 0 1 2] [--epochs N] [--recipe patterns]
        [--set KEY=VALUE] [--smoke]
"""

from __future__ import annotations

import statistics
import time

import torch

from bench.common import machine, parser, table
from study_cli.arguments import parse_overrides
from trainables.baselines import pixel_knn, untrained_knn
from trainables.recipes import recipe
from trainables.train import train

SMOKE = {
    "data.limit": 256,
    "data.eval_limit": 200,
    "knn.k": 10,
    "epochs": 1,
    "optim.warmup_epochs": 0,
}


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--recipe", default="patterns")
    arguments.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    arguments.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    arguments.add_argument(
        "--knn-every", type=int, default=5, help="kNN every N epochs (and at the end)"
    )
    arguments.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted recipe override, repeatable",
    )
    options = arguments.parse_args()
    chosen = parse_overrides(options.set)
    overrides = {**chosen, **(SMOKE if options.smoke else {})}
    if options.epochs is not None:
        overrides["epochs"] = options.epochs
    overrides["knn.every"] = options.knn_every
    overrides["device"] = (
        "cpu" if options.device == "auto" and not torch.cuda.is_available() else options.device
    )
    base = recipe(options.recipe, **overrides)

    pixels = pixel_knn(base)["knn_top1"]
    rows, trained = [], []
    for seed in options.seeds:
        config = base.replace(seed=seed)
        untrained = untrained_knn(config)["knn_top1"]
        started = time.perf_counter()
        history = train(config)
        minutes = (time.perf_counter() - started) / 60
        final = float(history[-1]["knn_top1"])
        trained.append(final)
        curve = " ".join(f"{m['epoch']}:{m['knn_top1']:.3f}" for m in history if "knn_top1" in m)
        rows.append(
            (
                seed,
                f"{untrained:.4f}",
                f"{pixels:.4f}",
                f"{final:.4f}",
                f"{final - untrained:+.4f}",
                f"{final - pixels:+.4f}",
                f"{minutes:.1f}",
                curve,
            )
        )
    spread = statistics.stdev(trained) if len(trained) > 1 else float("nan")
    changed = "".join(f", {key}={value}" for key, value in chosen.items())
    print(
        f"# Learning on `{base.data.dataset}` ({options.recipe} recipe{changed}: "
        f"{base.model.backbone}, {base.views.size} px, {base.views.family}, {base.epochs} epochs, "
        f"batch {base.batch_size}, kNN k={base.knn.k})"
    )
    print(f"machine: {machine(torch.device(base.device if base.device != 'auto' else 'cpu'))}\n")
    print(
        table(
            (
                "seed",
                "untrained",
                "raw pixels",
                "trained",
                "vs untrained",
                "vs pixels",
                "minutes",
                "kNN by epoch",
            ),
            rows,
        )
    )
    print(
        f"\ntrained mean {statistics.fmean(trained):.4f}, "
        f"std over {len(trained)} seeds {spread:.4f}"
    )


if __name__ == "__main__":
    main()
