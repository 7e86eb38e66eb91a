"""Writes docs/reliability.md: the faults injected and what survives them, and the bad inputs
tried with the messages they get now (each run through the checks that precede Ray, so nothing
starts). Regenerate with:

    .venv/bin/python -m tests.reliability.table > docs/reliability.md
"""

from __future__ import annotations

import ast
import contextlib
import io
import shlex
import socket
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# fault, how it is injected, the test, what the test asserts; "not yet" rows name what is missing.
FAULTS = [
    (
        "Training diverges (NaN loss)",
        "a sweep at `optim.base_lr=1e8`, real Ray + MLflow",
        "tests/reliability/test_divergence.py",
        "stops after epoch 1 of 4; results row DIVERGED with the reason; one Parquet epoch row; "
        "MLflow child FAILED with `study.stopped_by=diverged` and `study.stop_reason`, one `lr` "
        "step, no non-finite metric, no backbone; parent FINISHED with `trials_diverged=1`; Optuna "
        "trial FAIL with the reason",
    ),
    (
        "Training collapses (`z_std` low for N epochs)",
        "synthetic epoch histories",
        "tests/trainables/test_health.py",
        "stops only after N consecutive low epochs, names the epochs and the threshold; off at N=0",
    ),
    (
        "Corrupted image in an image folder",
        "COCO / ImageNet-100 files truncated to 20 bytes",
        "tests/trainables/test_data.py",
        "skipped with a warning naming the file, counted once, replaced by the next image; "
        "`skipped_images` reported per epoch (logged to MLflow)",
    ),
    (
        "Tracking server unreachable at start",
        "`--tracking-uri http://127.0.0.1:<closed port>`",
        "tests/reliability/test_bad_input.py",
        "exit 2 naming the URI; Ray not started; nothing written",
    ),
    (
        "Runs left RUNNING by a killed driver",
        "a sweep state with a dead driver PID, parent + child RUNNING",
        "tests/reliability/test_repair.py",
        "`study ls --repair` closes them KILLED, keeps FINISHED ones, marks the sweep "
        "interrupted; a live driver's sweep is untouched",
    ),
    (
        "Ray Train worker SIGKILLed mid-trial",
        "a watcher thread SIGKILLs every `RayTrainWorker` process 0.5 s after epoch 2 "
        "reaches MLflow (sweep with `max_failures=2`)",
        "tests/reliability/test_worker_killed.py",
        "the worker died; the trial ends FINISHED with 4 epochs; the replacement worker's own "
        "timeline (`STUDY_TIMELINE`) shows it loaded the checkpoint Train had registered last "
        "(epoch >= 2, one the killed worker wrote) and trained that epoch + 1 first, and epoch 1 "
        "was trained once, by the killed worker; MLflow `lr`, `knn_top1`, `loss` have steps 1-4 "
        "exactly once; `backbone.pt` logged; the Parquet epochs table has epochs 1-4 once",
    ),
    (
        "Sweep driver SIGKILLed, then resumed",
        "`study run` (grid of 3, 2 at a time) SIGKILLed once one trial finished "
        'and another logged an epoch; then `run_study(..., if_exists="resume")` '
        "(`study run --resume`)",
        "tests/reliability/test_driver_killed.py",
        "the kill left the sweep `running` with a dead driver; after the resume every trial is "
        "FINISHED with 3 epochs and the 3 grid points each ran once; MLflow has the same 3 runs "
        "(none duplicated), each epoch once; finished runs were not touched (same end time); "
        "unfinished trials have epochs 1-3 once in Parquet, and in the workers' timeline each was "
        "resumed by a worker that loaded its latest registered checkpoint and trained that epoch "
        "+ 1 first (only trials without a checkpoint at the kill trained epoch 1 again); Optuna "
        "has 3 COMPLETE trials; parent "
        "FINISHED; a grid point asked for after Tune's last saved state is adopted by the restored "
        "searcher (`tests/study/test_search.py`)",
    ),
    (
        "Ctrl-C or SIGTERM mid-sweep, then resumed",
        "`study run` (cutout, 2 trials x 6 epochs, 2 at a time) sent SIGINT (to its process "
        "group, as a terminal's Ctrl-C) or SIGTERM (to the driver, as on pre-emption) once a trial "
        "logged an epoch; then `study resume NAME`",
        "tests/reliability/test_interrupted.py",
        "exit 130 / 143; the last lines say how many of the 2 trials had ended and `resume with: "
        "study resume NAME --storage ...`, and no `Tuner.restore` hint; `study ls` and "
        "`study.json` say `interrupted`; the parent run KILLED with `study.state=interrupted`; "
        "the cut trials KILLED with `study.stopped_by=interrupt`; after `study resume` the sweep "
        "is finished, the same 2 runs FINISHED without the interrupt tag, `lr` and `knn_top1` "
        "steps 1-6 once, Parquet epochs 1-6 once. A second signal stops at once "
        "(`tests/study/test_interrupt.py`)",
    ),
    (
        "Tracking server dies mid-sweep",
        "`study ui`'s `mlflow server` process group SIGKILLed once a trial's first epoch "
        "is stored; kept down until the sweep ends; restarted; `study sync`",
        "tests/reliability/test_tracking_dropped.py",
        "the sweep ends normally, 3 trials FINISHED with every epoch in Parquet; the missed writes "
        "are kept in order in `tracking-outbox.jsonl` (`pending_tracking_writes` in the sweep "
        "state); after `study sync` MLflow has every run FINISHED with params, `backbone.pt` and "
        "epochs 1-3 once, the parent's results and status, and the Parquet every run id; a "
        "`MLFLOW_TRACKING_TOKEN` in the environment is in no param, tag, artifact, sweep file, "
        "driver log or Ray log",
    ),
    (
        "Truncated checkpoint met by a sweep",
        "the running trial's newest `checkpoint.pt` cut to a third after epoch 2, then "
        "its Train workers SIGKILLed",
        "tests/reliability/test_truncated_checkpoint.py",
        "the cut checkpoint raises CheckpointError; the restarted worker resumed from the epoch-1 "
        "checkpoint (readable checkpoints hold epochs 1, 2, 3, 4); trial FINISHED; MLflow and "
        "Parquet have epochs 1-4 once",
    ),
    (
        "Corrupted images met by a sweep",
        "two of 48 JPEGs of a COCO-layout folder cut to 20 bytes",
        "tests/reliability/test_corrupted_image.py",
        "trial FINISHED; `skipped_images` is 2 at every epoch in MLflow and in the Parquet epochs "
        "table",
    ),
    (
        "Training collapses, on Ray",
        "a sweep at `health.collapse_ratio=1` (every epoch counts as collapsed), "
        "`collapse_epochs=2`",
        "tests/reliability/test_divergence.py::test_a_collapsed_trial_stops_after_collapse_epochs_with_its_reason_everywhere",
        "COLLAPSED after epoch 2 of 4 with the reason; Parquet epochs 1-2; MLflow FAILED, "
        "`study.stopped_by=collapsed`, steps 1-2; parent `trials_collapsed=1`; Optuna FAIL with "
        "the reason",
    ),
    (
        "Cluster node lost mid-trial",
        "a `ray.cluster_utils.Cluster` (head + 3 one-CPU workers, one spare), shared storage "
        "folder, MLflow server; the node under a running trial removed (no drain) once the trial "
        "checkpointed its epoch 2",
        "tests/study/test_cluster.py::test_a_trial_resumed_on_another_node_after_its_node_was_removed",
        "the trial ends FINISHED with epochs 1-5 once in Parquet; the epochs it checkpointed "
        "before the removal record the removed node, the rest another (also in `study.nodes`); "
        "every trial's MLflow run FINISHED with `knn_top1` steps 1-5 once and `config.yaml`, "
        "`view_pairs.png`, `view_stats.json`, `backbone.pt` through the server",
    ),
    (
        "Token refused by the Ray Client server",
        "`study run --address ray://...` with a wrong `RAY_AUTH_TOKEN`",
        "tests/study/test_cluster_cli.py::test_a_wrong_token_is_refused_by_the_ray_client_server",
        "exits 2: `address=... expected a Ray cluster that accepts this driver's token (Received "
        "when checking init: Invalid or missing authentication token)` (Ray Client alone says "
        "`ray client connection timeout`); nothing written",
    ),
    (
        "Node that cannot see the storage",
        "a 3rd `ray start` node inside its own mount namespace with a tmpfs over the "
        "storage folder",
        "tests/study/test_cluster_cli.py::test_a_node_that_does_not_see_the_storage_is_named_and_nothing_starts",
        "`study run` exits 2: `storage=... expected a folder shared by every node of the 3-node "
        "cluster ... do not see it`; nothing written",
    ),
]


def test_names(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    ]


def check_references() -> None:
    """Every test a row names exists, so the table cannot point at tests that are gone."""
    for _, _, reference, _ in FAULTS:
        if reference == "-":
            continue
        file, _, name = reference.partition("::")
        names = test_names(ROOT / file)
        if not names or (name and name not in names):
            raise SystemExit(f"tests/reliability/table.py names a missing test: {reference}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def bad_inputs(scratch: Path) -> list[tuple[str, str]]:
    """(input, message) for each bad input, through the same checks `study run` makes before Ray."""
    from study.prepare import prepare_study
    from study_cli.commands import build_parser, study_config
    from trainables.validation import ConfigError

    storage = scratch / "runs"
    (storage / "taken").mkdir(parents=True)
    (scratch / "empty" / "coco" / "train2017").mkdir(parents=True)
    store = f"sqlite:///{scratch / 'mlflow.db'}"
    cases = [
        "--space zoom",
        "--space overlap --dataset mnist",
        "--space overlap --set model.backbone=vgg",
        "--space overlap --dataset digits --set knn.k=200",
        "--preset fig2a-overlap --grid-only views.params.overlap=[1.5]",
        "--space overlap --set views.family=overlap --set views.params.overlap=1.2",
        "--space patch --set views.family=patch --set views.params.patch=0",
        "--space exclusive --set views.family=exclusive --set views.params.gap=1",
        "--space cutout --set views.family=cutout --set views.params.fill=blur "
        "--set views.params.hole=0.1 --set views.params.blur=0.5",
        "--space overlap --epochs 0",
        "--space overlap --epochs -3",
        "--space margin --set margin.mode=distance --set margin.k=-1",
        "--space overlap --gpus-per-trial 1",
        "--space overlap --name taken",
        "--space overlap --name ../../etc",
        "--space overlap --set data.dataset=../../etc",
        "--space overlap --set epochs=ten",
        "--space overlap --set 'batch_size=[1'",
        "--space overlap --grid --grid-only views.params.overlap=[0.35]",
        "--space overlap --name taken --resume",
        "--space overlap --set data.dataset=cifar10 --set data.root={scratch}/no-data",
        "--space overlap --set data.dataset=coco --set data.eval_dataset=digits "
        "--set data.root={scratch}/empty",
        "--space overlap --tracking-uri http://alice:hunter2@127.0.0.1:5000",
    ]
    rows = []
    port = free_port()
    cases.append(f"--space overlap --tracking-uri http://127.0.0.1:{port}")
    for case in cases:
        store_flags = [] if "--tracking-uri" in case else ["--tracking-uri", store]
        args = build_parser().parse_args(
            [
                "run",
                *shlex.split(case.format(scratch=scratch)),
                "--storage",
                str(storage),
                *store_flags,
            ]
        )
        try:
            prepare_study(study_config(args))
            message = "ACCEPTED (not refused!)"
        except ConfigError as error:
            message = str(error).replace(str(scratch), "<tmp>")
        rows.append((f"study run {case.format(scratch='<tmp>')}", message))
    return [
        (case.replace(str(port), "<free port>"), message.replace(str(port), "<free port>"))
        for case, message in rows
    ]


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    check_references()
    with tempfile.TemporaryDirectory() as scratch, contextlib.redirect_stderr(io.StringIO()):
        rows = bad_inputs(Path(scratch))
    out = [
        "# Reliability",
        "",
        "Generated by `.venv/bin/python -m tests.reliability.table > docs/reliability.md`; "
        "do not edit by hand.",
        "",
        "## Faults injected",
        "",
        "| fault | injected as | test | asserts |",
        "|---|---|---|---|",
        *[
            f"| {cell(fault)} | {cell(how)} | `{cell(test)}` | {cell(asserts)} |"
            for fault, how, test, asserts in FAULTS
        ],
        "",
        "## Bad inputs (refused before Ray starts, CLI exit code 2)",
        "",
        "| input | message |",
        "|---|---|",
        *[f"| `{cell(case)}` | {cell(message)} |" for case, message in rows],
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())
