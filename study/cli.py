"""The ``study`` command line.

``study demo`` runs the embedded default sweep on bundled data; ``study run`` starts a sweep
over a search space or a preset; ``study resume``, ``study ls``, ``study sync`` and ``study export``
manage sweeps; ``study report`` draws a sweep's figures and HTML report; ``study ui`` serves the MLflow
UI on the tracking store; ``study train`` runs one training without Ray. Bad input exits with code 2 and a message
naming the field, the value and the valid range, before any cluster work starts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from trainables.config import TrainConfig, apply_overrides, switch_family
from trainables.recipes import RECIPES, recipe
from trainables.validation import ConfigError

EXIT_BAD_INPUT = 2
TABLE_COLUMNS = ("epoch", "loss", "knn_top1", "knn_top5", "z_std", "floor_active", "overlap_mean", "phi_mean", "images_per_s")
DEMO = {
    "space": "overlap",
    "dataset": "patterns",
    "num_samples": 6,
    "grace_period": 2,
    "reduction_factor": 2,
    "max_concurrent_trials": 2,
}
RUN_OPTIONS = {
    # flag: (StudyConfig field, type, help)
    "--space": ("space", str, "search space: overlap, patch, exclusive, cutout, margin"),
    "--preset": ("preset", str, "a preset, e.g. fig2a-overlap or fig2a-overlap-bundled"),
    "--dataset": ("dataset", str, "training dataset"),
    "--eval-dataset": ("eval_dataset", str, "labelled dataset for kNN (default: the training set's)"),
    "--recipe": ("recipe", str, f"base recipe: {', '.join(RECIPES)}"),
    "--num-samples": ("num_samples", int, "trials of a search (grids run every point x seed)"),
    "--epochs": ("epochs", int, "epochs per trial (ASHA's max_t when early stopping is on)"),
    "--gpus-per-trial": ("gpus_per_trial", float, "GPUs per trial, fractional to pack trials on a GPU (default: by backbone and view size, 0 without GPUs)"),
    "--workers-per-trial": ("workers_per_trial", int, "DDP workers per trial"),
    "--cpus-per-worker": ("cpus_per_worker", float, "CPUs per DDP worker"),
    "--max-concurrent-trials": ("max_concurrent_trials", int, "default: what the cluster fits"),
    "--grace-period": ("grace_period", int, "ASHA grace period in epochs (with early stopping)"),
    "--reduction-factor": ("reduction_factor", int, "ASHA reduction factor (with early stopping)"),
    "--address": ("address", str, "Ray address, e.g. auto or ray://host:10001 (default: local Ray)"),
    "--tracking-uri": ("tracking_uri", str, "MLflow tracking URI (default: sqlite:///mlflow.db)"),
    "--storage": ("storage", str, "where sweeps are stored (default: ./runs)"),
    "--name": ("name", str, "sweep name (default: derived from space/preset, dataset and time)"),
    "--seed": ("seed", int, "searcher seed"),
}


def parse_overrides(pairs: list[str], flag: str = "--set") -> dict[str, Any]:
    """``KEY=VALUE`` pairs, each VALUE read as YAML (so ``0.3``, ``blur``, ``[0.2, 0.6]``)."""
    overrides = {}
    for pair in pairs:
        key, separator, text = pair.partition("=")
        if not separator or not key:
            raise ConfigError(flag, pair, "KEY=VALUE with a dotted KEY, e.g. views.params.overlap=0.3")
        try:
            overrides[key] = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(flag, pair, f"KEY=VALUE with a YAML VALUE ({type(error).__name__})") from error
    return overrides


def read_yaml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    if not path.is_file():
        raise ConfigError("--config", str(path), "an existing YAML file")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError("--config", str(path), f"a valid YAML file ({error})".replace("\n", " ")) from error
    if not isinstance(loaded, dict):
        raise ConfigError("--config", str(path), "a YAML mapping")
    return loaded


def load_config(recipe_name: str, config_file: Path | None, overrides: dict[str, Any]) -> TrainConfig:
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
    if args.grid_only:
        data["grid_only"] = {**data.get("grid_only", {}), **parse_overrides(args.grid_only, "--grid-only")}
    data["overrides"] = {**data.get("overrides", {}), **parse_overrides(args.set)}
    return StudyConfig.from_dict(data)


def format_row(values: dict[str, float]) -> str:
    cells = []
    for column in TABLE_COLUMNS:
        value = values.get(column, float("nan"))
        cells.append(f"{value:>12d}" if column == "epoch" else f"{value:>12.4f}")
    return " ".join(cells)


def run_training(config: TrainConfig, out: Path | None) -> None:
    from trainables.baselines import describe, sweep_baselines  # torch start-up cost only once input is valid
    from trainables.train import train

    print(f"training {config.views.family} views on {config.data.dataset}, kNN on {config.data.eval_dataset}")
    baselines = sweep_baselines(config, [config.seed])
    print(f"baselines (kNN top-1, same seed): {describe(baselines)}")
    print(" ".join(f"{column:>12}" for column in TABLE_COLUMNS), flush=True)
    started = time.perf_counter()
    history = train(config, report=lambda metrics, _: print(format_row(metrics), flush=True), workdir=out)
    final = history[-1]
    print(
        f"done in {time.perf_counter() - started:.0f} s: knn_top1={final['knn_top1']:.4f} "
        f"knn_top5={final['knn_top5']:.4f}" + (f", last checkpoint under {out}" if out else "")
    )
    print(f"against the baselines: {describe(baselines, final['knn_top1'], config.seed)}")


def print_result(result) -> None:
    from study.results import format_table
    from trainables.baselines import describe

    print(f"\nsweep {result.name}: {result.trials.num_rows} trials")
    print(format_table(result.trials))
    if result.best_config is not None:
        views = result.best_config["views"]
        print(f"\nbest knn_top1={result.best_knn_top1:.4f}: views {views['family']} {views['params']}, "
              f"margin {result.best_config['margin']}, seed {result.best_config['seed']}")
    if result.baselines:
        best_seed = result.best_config["seed"] if result.best_config is not None else None
        print(f"baselines: {describe(result.baselines, result.best_knn_top1, best_seed)}")
    print(f"results: {result.trials_path} and {result.epochs_path}")
    print(f"browse:  {result.ui_command()}")


def write_sweep_report(name: str, storage: str, source: str = "parquet", with_sweeps: list[str] = (), log: bool = True):
    from dashboards.report import report_sweep

    return report_sweep(name, storage, source, with_sweeps, log=log)


def print_report(report) -> None:
    print(f"\nreport: {report.html_path}")
    print(f"figures: {', '.join(entry.name for entry in report.drawn)} (PNG in {report.directory})")
    if report.missing:
        print(f"not drawn, no data in this sweep: {', '.join(entry.name for entry in report.missing)} (reasons in the report)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="study", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="a real small sweep on bundled data with local Ray")
    demo.add_argument("--storage", default="runs")
    demo.add_argument("--tracking-uri", default="sqlite:///mlflow.db")

    run = commands.add_parser("run", help="start a sweep")
    for flag, (field, kind, text) in RUN_OPTIONS.items():
        run.add_argument(flag, dest=field, type=kind, help=text)
    run.add_argument("--grid", action="store_true", help="run the space's paper grid instead of a search")
    run.add_argument("--early-stopping", action=argparse.BooleanOptionalAction, default=None,
                     help="stop poor trials early with ASHA (default: on for a search, off for a grid, which runs every "
                          "point and seed to the last epoch)")
    run.add_argument("--seeds", type=int, nargs="+", help="seed repeats of a grid")
    run.add_argument("--grid-only", action="append", default=[], metavar="KEY=[V1,V2]",
                     help="keep the grid points with these values, e.g. views.params.overlap=[0.2,0.6]; repeatable")
    run.add_argument("--config", type=Path, help="YAML file of study fields (and `overrides:`)")
    taken = run.add_mutually_exclusive_group()
    taken.add_argument("--resume", dest="if_exists", action="store_const", const="resume",
                       help="if a sweep of this --name exists, resume it instead of refusing")
    taken.add_argument("--overwrite", dest="if_exists", action="store_const", const="overwrite",
                       help="if a sweep of this --name exists, replace it (its directory is kept under <storage>/.replaced/)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted TrainConfig override, repeatable")

    resume = commands.add_parser("resume", help="finish an interrupted sweep")
    resume.add_argument("name")
    resume.add_argument("--storage", default="runs")
    resume.add_argument("--address", help="Ray cluster to finish it on (default: RAY_ADDRESS, else the sweep's own)")
    listing = commands.add_parser("ls", help="sweeps with their status and best result")
    listing.add_argument("--storage", default="runs")
    listing.add_argument("--repair", action="store_true", help="close the runs of sweeps whose driver died (left RUNNING by a hard kill)")
    report = commands.add_parser("report", help="figures and a self-contained HTML report of a sweep")
    report.add_argument("name")
    report.add_argument("--with", dest="with_sweeps", nargs="+", default=[], metavar="NAME",
                        help="other sweeps whose trials are drawn alongside (more datasets, or patch beside overlap)")
    report.add_argument("--source", choices=("parquet", "mlflow"), default="parquet", help="read trials from (default: parquet)")
    report.add_argument("--storage", default="runs")
    report.add_argument("--no-log", action="store_true", help="do not log the report to the sweep's parent MLflow run")
    sync = commands.add_parser("sync", help="replay the tracking writes a sweep kept while MLflow did not answer")
    sync.add_argument("name")
    sync.add_argument("--storage", default="runs")
    export = commands.add_parser("export", help="rewrite a sweep's Parquet tables")
    export.add_argument("name")
    export.add_argument("--storage", default="runs")
    ui = commands.add_parser("ui", help="browse sweeps in the MLflow UI (mlflow server on 127.0.0.1)")
    ui.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1 (default: 5000)")
    ui.add_argument("--tracking-uri", default="sqlite:///mlflow.db", help="MLflow tracking store (default: sqlite:///mlflow.db)")

    train = commands.add_parser("train", help="one SimSiam training run, without Ray")
    train.add_argument("--recipe", default="digits", help=f"one of {', '.join(RECIPES)} (default: digits)")
    train.add_argument("--config", type=Path, help="YAML file of config sections")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override, repeatable")
    train.add_argument("--out", type=Path, help="directory for checkpoints")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "ui":
            from study.ui import run_ui

            return run_ui(args.tracking_uri, args.port)
        if args.command == "train":
            run_training(load_config(args.recipe, args.config, parse_overrides(args.set)), args.out)
            return 0
        if args.command == "ls":
            from study.sweep import list_studies

            rows = list_studies(args.storage, repair=args.repair)
            print(f"{'name':<48} {'state':<12} {'mode':<7} {'trials':>6} {'best knn_top1':>14}")
            for row in rows:
                best = "-" if row["best_knn_top1"] is None else f"{row['best_knn_top1']:.4f}"
                notes = f"  (closed {row['repaired']} runs left RUNNING)" if row["repaired"] else ""
                if row["pending_tracking_writes"]:
                    notes += f"  ({row['pending_tracking_writes']} tracking writes kept: study sync {row['name']})"
                print(f"{row['name']:<48} {row['state']:<12} {row['mode']:<7} {row['trials'] or '-':>6} {best:>14}{notes}")
            return 0
        if args.command == "sync":
            from study.sweep import sync_study

            left = sync_study(args.name, args.storage)
            print(f"{args.name}: MLflow has every tracking write" if not left else f"{args.name}: {left} tracking writes still kept (MLflow did not take them)")
            return 0 if not left else 1
        if args.command == "export":
            from study.sweep import export_study

            for path in export_study(args.name, args.storage):
                print(path)
            return 0
        if args.command == "report":
            print_report(write_sweep_report(args.name, args.storage, args.source, args.with_sweeps, log=not args.no_log))
            return 0
        if args.command == "resume":
            from study.sweep import resume_study

            print_result(resume_study(args.name, args.storage, args.address))
            return 0
        if args.command == "demo":
            from study.config import StudyConfig, default_name

            config = StudyConfig(**DEMO, name=default_name("demo-overlap", DEMO["dataset"]), storage=args.storage, tracking_uri=args.tracking_uri)
        else:
            config = study_config(args)
        from study.config import plan
        from study.sweep import run_study

        study_plan = plan(config)
        print(f"sweep {study_plan.name}: {study_plan.mode} over {config.space or config.preset}, "
              f"{study_plan.num_samples} trials x {study_plan.epochs} epochs on {study_plan.base_config.data.dataset}, "
              f"{'stopped early by ASHA' if study_plan.early_stopping else 'every trial to the last epoch (no early stopping)'}", flush=True)
        result = run_study(config)
        print_result(result)
        if args.command == "demo":
            print_report(write_sweep_report(result.name, config.storage))
        return 0
    except ConfigError as error:
        print(f"study: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
