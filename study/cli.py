"""The ``study`` command line.

``study demo`` runs the embedded default on bundled data; ``study train`` runs one SimSiam
training from a recipe, a YAML config and ``--set key=value`` overrides. Bad input exits with
code 2 and a message naming the field, the value and the valid range, before any work starts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from trainables.config import TrainConfig, set_path
from trainables.recipes import RECIPES, recipe
from trainables.validation import ConfigError

EXIT_BAD_INPUT = 2
TABLE_COLUMNS = ("epoch", "loss", "knn_top1", "knn_top5", "z_std", "floor_active", "overlap_mean", "phi_mean", "images_per_s")


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    overrides = {}
    for pair in pairs:
        key, separator, text = pair.partition("=")
        if not separator or not key:
            raise ConfigError("--set", pair, "KEY=VALUE with a dotted KEY, e.g. views.params.overlap=0.3")
        overrides[key] = yaml.safe_load(text)
    return overrides


def load_config(recipe_name: str, config_file: Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """Recipe, then the YAML file's fields, then the overrides; validated once at the end."""
    config = recipe(recipe_name).to_dict()
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError("--config", str(config_file), "an existing YAML file")
        loaded = yaml.safe_load(config_file.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError("--config", str(config_file), "a YAML mapping of config sections")
        _merge(config, loaded)
    for path, value in overrides.items():
        set_path(config, path, value)
    return TrainConfig.from_dict(config)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "params":
            _merge(base[key], value)
        else:
            base[key] = value


def format_row(values: dict[str, float]) -> str:
    cells = []
    for column in TABLE_COLUMNS:
        value = values.get(column, float("nan"))
        cells.append(f"{value:>12d}" if column == "epoch" else f"{value:>12.4f}")
    return " ".join(cells)


def run_training(config: TrainConfig, out: Path | None) -> None:
    from trainables.train import (  # torch start-up cost only once input is valid
        train,
        untrained_knn,
    )

    print(f"training {config.views.family} views on {config.data.dataset}, kNN on {config.data.eval_dataset}")
    baseline = untrained_knn(config)
    print(f"untrained encoder (same seed): knn_top1={baseline['knn_top1']:.4f} knn_top5={baseline['knn_top5']:.4f}")
    print(" ".join(f"{column:>12}" for column in TABLE_COLUMNS), flush=True)
    started = time.perf_counter()
    history = train(config, report=lambda metrics, _: print(format_row(metrics), flush=True), workdir=out)
    final = history[-1]
    print(
        f"done in {time.perf_counter() - started:.0f} s: knn_top1={final['knn_top1']:.4f} "
        f"knn_top5={final['knn_top5']:.4f}" + (f", last checkpoint under {out}" if out else "")
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="study", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="train on bundled digits with the CPU-sized recipe")
    train = commands.add_parser("train", help="one SimSiam training run")
    train.add_argument("--recipe", default="digits", help=f"one of {', '.join(RECIPES)} (default: digits)")
    train.add_argument("--config", type=Path, help="YAML file of config sections")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override, repeatable")
    train.add_argument("--out", type=Path, help="directory for checkpoints")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            config = recipe("digits")
            out = None
        else:
            config = load_config(args.recipe, args.config, parse_overrides(args.set))
            out = args.out
    except ConfigError as error:
        print(f"study: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    run_training(config, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
