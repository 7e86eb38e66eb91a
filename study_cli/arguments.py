"""The ``study`` command's arguments: its parser, and the configs read from flags, YAML files and
``--set`` overrides (validated once, at the end)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from study.vocabulary import DEFAULT_STORAGE
from trainables.config import TrainConfig, apply_overrides, switch_family
from trainables.recipes import RECIPES, recipe
from trainables.validation import ConfigError

DESCRIPTION = "The study command line."
RUN_OPTIONS = {
    # flag: (StudyConfig field, type, help)
    "--space": ("space", str, "search space: overlap, patch, exclusive, cutout, margin"),
    "--preset": ("preset", str, "a preset, e.g. fig2a-overlap or fig2a-overlap-bundled"),
    "--dataset": ("dataset", str, "training dataset"),
    "--eval-dataset": (
        "eval_dataset",
        str,
        "labelled dataset for kNN (default: the training set's)",
    ),
    "--recipe": ("recipe", str, f"base recipe: {', '.join(RECIPES)}"),
    "--num-samples": ("num_samples", int, "trials of a search (grids run every point x seed)"),
    "--epochs": ("epochs", int, "epochs per trial (ASHA's max_t when early stopping is on)"),
    "--gpus-per-trial": (
        "gpus_per_trial",
        float,
        "GPUs per trial, fractional to pack trials on a GPU (default: by backbone and view size, 0 "
        "without GPUs)",
    ),
    "--workers-per-trial": ("workers_per_trial", int, "DDP workers per trial"),
    "--cpus-per-worker": ("cpus_per_worker", float, "CPUs per DDP worker"),
    "--max-concurrent-trials": ("max_concurrent_trials", int, "default: what the cluster fits"),
    "--grace-period": ("grace_period", int, "ASHA grace period in epochs (with early stopping)"),
    "--reduction-factor": ("reduction_factor", int, "ASHA reduction factor (with early stopping)"),
    "--address": (
        "address",
        str,
        "Ray address, e.g. auto or ray://host:10001 (default: local Ray)",
    ),
    "--tracking-uri": ("tracking_uri", str, "MLflow tracking URI (default: sqlite:///mlflow.db)"),
    "--storage": ("storage", str, "where sweeps are stored (default: ./runs)"),
    "--name": ("name", str, "sweep name (default: derived from space/preset, dataset and time)"),
    "--seed": ("seed", int, "searcher seed"),
}

DEMO_BUDGET = ("--num-samples", "--epochs", "--grace-period", "--reduction-factor")
"""The `study run` flags `study demo` takes too, to make the demo smaller or longer."""


def demo_budget_fields() -> tuple[str, ...]:
    """The StudyConfig fields of :data:`DEMO_BUDGET`."""
    return tuple(RUN_OPTIONS[flag][0] for flag in DEMO_BUDGET)


def parse_overrides(pairs: list[str], flag: str = "--set") -> dict[str, Any]:
    """``KEY=VALUE`` pairs, each VALUE read as YAML (so ``0.3``, ``blur``, ``[0.2, 0.6]``)."""
    overrides = {}
    for pair in pairs:
        key, separator, text = pair.partition("=")
        if not separator or not key:
            raise ConfigError(
                flag, pair, "KEY=VALUE with a dotted KEY, e.g. views.params.overlap=0.3"
            )
        try:
            overrides[key] = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(
                flag, pair, f"KEY=VALUE with a YAML VALUE ({type(error).__name__})"
            ) from error
    return overrides


def read_yaml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    if not path.is_file():
        raise ConfigError("--config", str(path), "an existing YAML file")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(
            "--config", str(path), f"a valid YAML file ({error})".replace("\n", " ")
        ) from error
    if not isinstance(loaded, dict):
        raise ConfigError("--config", str(path), "a YAML mapping")
    return loaded


def load_config(
    recipe_name: str, config_file: Path | None, overrides: dict[str, Any]
) -> TrainConfig:
    """Recipe, then the YAML file's fields, then the overrides; validated once at the end."""
    config = recipe(recipe_name).to_dict()
    _merge(config, read_yaml(config_file))
    apply_overrides(config, overrides)
    return TrainConfig.from_dict(config)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    if isinstance(update.get("views"), dict) and "family" in update["views"]:
        switch_family(base, update["views"]["family"])
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "params":
            _merge(base[key], value)
        else:
            base[key] = value


VERBOSE_HELP = (
    "print Tune's per-trial config and result boxes and Ray Train's per-report and "
    "per-checkpoint lines (default: Tune's progress table and one line per trial event)"
)


def study_config(args: argparse.Namespace):
    """StudyConfig from a YAML file, then the flags given, then ``--set`` overrides."""
    from study.config import StudyConfig

    data = read_yaml(args.config)
    for flag, (field, _, _) in RUN_OPTIONS.items():
        value = getattr(args, field)
        if value is not None:
            data[field] = value
    if args.grid:
        data["grid"] = True
    if args.early_stopping is not None:
        data["early_stopping"] = args.early_stopping
    if args.if_exists:
        data["if_exists"] = args.if_exists
    if args.seeds:
        data["seeds"] = args.seeds
    if args.verbose:
        data["verbose"] = True
    if args.grid_only:
        data["grid_only"] = {
            **data.get("grid_only", {}),
            **parse_overrides(args.grid_only, "--grid-only"),
        }
    data["overrides"] = {**data.get("overrides", {}), **parse_overrides(args.set)}
    return StudyConfig.from_dict(data)


def add_set_flag(parser: argparse.ArgumentParser, text: str) -> None:
    """The repeatable ``--set KEY=VALUE`` overrides (read by :func:`parse_overrides`)."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="study", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="a real small sweep on bundled data with local Ray")
    demo.add_argument("--storage", default=DEFAULT_STORAGE)
    demo.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    demo.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    for flag in DEMO_BUDGET:
        field, kind, text = RUN_OPTIONS[flag]
        demo.add_argument(flag, dest=field, type=kind, help=f"{text} (default: the demo's)")
    add_set_flag(
        demo, "dotted TrainConfig override of the demo's trials, repeatable, e.g. data.limit=512"
    )

    run = commands.add_parser("run", help="start a sweep")
    for flag, (field, kind, text) in RUN_OPTIONS.items():
        run.add_argument(flag, dest=field, type=kind, help=text)
    run.add_argument(
        "--grid", action="store_true", help="run the space's paper grid instead of a search"
    )
    run.add_argument(
        "--early-stopping",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="stop poor trials early with ASHA (default: on for a search, off for a grid, which "
        "runs every "
        "point and seed to the last epoch)",
    )
    run.add_argument("--seeds", type=int, nargs="+", help="seed repeats of a grid")
    run.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    run.add_argument(
        "--grid-only",
        action="append",
        default=[],
        metavar="KEY=[V1,V2]",
        help="keep the grid points with these values, e.g. views.params.overlap=[0.2,0.6]; "
        "repeatable",
    )
    run.add_argument("--config", type=Path, help="YAML file of study fields (and `overrides:`)")
    taken = run.add_mutually_exclusive_group()
    taken.add_argument(
        "--resume",
        dest="if_exists",
        action="store_const",
        const="resume",
        help="if a sweep of this --name exists, resume it instead of refusing",
    )
    taken.add_argument(
        "--overwrite",
        dest="if_exists",
        action="store_const",
        const="overwrite",
        help="if a sweep of this --name exists, replace it (its directory is kept under "
        "<storage>/.replaced/)",
    )
    add_set_flag(run, "dotted TrainConfig override, repeatable")

    resume = commands.add_parser("resume", help="finish an interrupted sweep")
    resume.add_argument("name")
    resume.add_argument("--storage", default=DEFAULT_STORAGE)
    resume.add_argument(
        "--address", help="Ray cluster to finish it on (default: RAY_ADDRESS, else the sweep's own)"
    )
    listing = commands.add_parser("ls", help="sweeps with their status and best result")
    listing.add_argument("--storage", default=DEFAULT_STORAGE)
    listing.add_argument(
        "--repair",
        action="store_true",
        help="close the runs of sweeps whose driver died (left RUNNING by a hard kill)",
    )
    report = commands.add_parser(
        "report", help="figures and a self-contained HTML report of a sweep"
    )
    report.add_argument("name")
    report.add_argument(
        "--with",
        dest="with_sweeps",
        nargs="+",
        default=[],
        metavar="NAME",
        help="other sweeps whose trials are drawn alongside (more datasets, or patch beside "
        "overlap)",
    )
    report.add_argument(
        "--source",
        choices=("parquet", "mlflow"),
        default="parquet",
        help="read trials from (default: parquet)",
    )
    report.add_argument("--storage", default=DEFAULT_STORAGE)
    report.add_argument(
        "--no-log",
        action="store_true",
        help="do not log the report to the sweep's parent MLflow run",
    )
    sync = commands.add_parser(
        "sync", help="replay the tracking writes a sweep kept while MLflow did not answer"
    )
    sync.add_argument("name")
    sync.add_argument("--storage", default=DEFAULT_STORAGE)
    export = commands.add_parser("export", help="rewrite a sweep's Parquet tables")
    export.add_argument("name")
    export.add_argument("--storage", default=DEFAULT_STORAGE)
    ui = commands.add_parser(
        "ui", help="browse sweeps in the MLflow UI (mlflow server on 127.0.0.1)"
    )
    ui.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1 (default: 5000)")
    ui.add_argument(
        "--tracking-uri",
        default="sqlite:///mlflow.db",
        help="MLflow tracking store (default: sqlite:///mlflow.db)",
    )

    train = commands.add_parser("train", help="one SimSiam training run, without Ray")
    train.add_argument(
        "--recipe", default="digits", help=f"one of {', '.join(RECIPES)} (default: digits)"
    )
    train.add_argument("--config", type=Path, help="YAML file of config sections")
    add_set_flag(train, "dotted override, repeatable")
    train.add_argument("--out", type=Path, help="directory for checkpoints")
    return parser
