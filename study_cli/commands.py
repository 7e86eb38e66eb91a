"""The ``study`` command line.

``study demo`` runs the embedded default sweep on bundled data; ``study run`` starts a sweep over
a search space or a preset; ``study resume``, ``study ls``, ``study sync`` and ``study export``
manage sweeps; ``study report`` draws a sweep's figures and HTML report; ``study ui`` serves the
MLflow UI on the tracking store; ``study train`` runs one training without Ray. Bad input exits
with code 2 and a message naming the field, the value and the valid range, before any cluster
work starts.
"""

from __future__ import annotations

import argparse
import sys

from study.interrupt import SweepInterrupted
from study_cli.arguments import (
    build_parser,
    demo_budget_fields,
    load_config,
    parse_overrides,
    study_config,
)
from study_cli.missing import OWN_PACKAGES, install_hint
from study_cli.output import (
    print_interrupted,
    print_listing,
    print_report,
    print_result,
    run_training,
)
from trainables.validation import ConfigError

EXIT_BAD_INPUT = 2
DEMO = {
    "space": "overlap",
    "dataset": "patterns",
    "num_samples": 6,
    "grace_period": 2,
    "reduction_factor": 2,
    "max_concurrent_trials": 2,
}


def ui_command(args: argparse.Namespace) -> int:
    from study.ui import run_ui

    return run_ui(args.tracking_uri, args.port)


def train_command(args: argparse.Namespace) -> int:
    run_training(load_config(args.recipe, args.config, parse_overrides(args.set)), args.out)
    return 0


def ls_command(args: argparse.Namespace) -> int:
    from study.stored import list_studies

    print_listing(list_studies(args.storage, repair=args.repair))
    return 0


def sync_command(args: argparse.Namespace) -> int:
    from study.stored import sync_study

    left = sync_study(args.name, args.storage)
    print(
        f"{args.name}: MLflow has every tracking write"
        if not left
        else f"{args.name}: {left} tracking writes still kept (MLflow did not take them)"
    )
    return 0 if not left else 1


def export_command(args: argparse.Namespace) -> int:
    from study.stored import export_study

    for path in export_study(args.name, args.storage):
        print(path)
    return 0


def report_command(args: argparse.Namespace) -> int:
    from dashboards.report import report_sweep

    print_report(
        report_sweep(args.name, args.storage, args.source, args.with_sweeps, log=not args.no_log)
    )
    return 0


def resume_command(args: argparse.Namespace) -> int:
    from dashboards.gallery import draw_view_pairs
    from study.lifecycle import resume_study

    print_result(resume_study(args.name, args.storage, args.address, view_gallery=draw_view_pairs))
    return 0


def sweep(config, then_report: bool = False) -> int:
    """Check, announce and run a sweep (and report it)."""
    from dashboards.gallery import draw_view_pairs
    from dashboards.report import report_sweep
    from study.lifecycle import start_study
    from study.prepare import prepare_study

    prepared = prepare_study(config)
    study_plan = prepared.plan
    print(
        f"sweep {study_plan.name}: {study_plan.mode} over {config.space or config.preset}, "
        f"{study_plan.num_samples} trials x {study_plan.epochs} epochs on "
        f"{study_plan.base_config.data.dataset}, "
        + (
            "stopped early by ASHA"
            if study_plan.early_stopping
            else "every trial to the last epoch (no early stopping)"
        ),
        flush=True,
    )
    result = start_study(prepared, view_gallery=draw_view_pairs)
    print_result(result)
    if then_report:
        print_report(report_sweep(result.name, config.storage))
    return 0


def demo_config(args: argparse.Namespace):
    """The embedded demo sweep (:data:`DEMO` on the bundled patterns), with the budget flags and
    ``--set`` overrides given."""
    from study.config import StudyConfig, default_name

    budget = {
        field: value
        for field in demo_budget_fields()
        if (value := getattr(args, field)) is not None
    }
    return StudyConfig(
        **{**DEMO, **budget},
        name=default_name("demo-overlap", DEMO["dataset"]),
        storage=args.storage,
        tracking_uri=args.tracking_uri,
        verbose=args.verbose,
        overrides=parse_overrides(args.set),
    )


def demo_command(args: argparse.Namespace) -> int:
    return sweep(demo_config(args), then_report=True)


def run_command(args: argparse.Namespace) -> int:
    return sweep(study_config(args))


COMMANDS = {
    "demo": demo_command,
    "run": run_command,
    "resume": resume_command,
    "ls": ls_command,
    "report": report_command,
    "sync": sync_command,
    "export": export_command,
    "ui": ui_command,
    "train": train_command,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as error:
        print(f"study: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SweepInterrupted as interrupted:
        print_interrupted(interrupted)
        return interrupted.exit_code
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] in OWN_PACKAGES:
            raise
        print(f"study: error: {install_hint(error.name)}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
