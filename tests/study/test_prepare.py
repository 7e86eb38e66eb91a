"""What `study run` decides before Ray starts: a taken name, data paths (no Ray is started)."""

import os

import pytest
import ray

from study import StudyConfig
from study.config import default_gpus_per_trial
from study.layout import sweep_directory
from study.prepare import prepare_study, set_aside
from study.state import read_state, write_state
from study.vocabulary import REPLACED_DIR
from tests.sweep_states import Driver, Lifecycle, sweep_state
from trainables.recipes import recipe
from trainables.validation import ConfigError


def config(tmp_path, **fields):
    return StudyConfig(
        space="overlap",
        name="taken",
        storage=str(tmp_path / "runs"),
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        **fields,
    )


@pytest.fixture
def taken(tmp_path):
    directory = sweep_directory(tmp_path / "runs", "taken")
    (directory / "results").mkdir(parents=True)
    (directory / "results" / "trials.parquet").write_bytes(b"kept")
    write_state(
        directory, sweep_state("taken", lifecycle=Lifecycle.FINISHED, driver=Driver("elsewhere", 1))
    )
    return directory


def test_a_taken_name_is_refused_by_default_and_says_how_to_go_on(tmp_path, taken):
    with pytest.raises(ConfigError, match="--resume.*--overwrite"):
        prepare_study(config(tmp_path))
    assert not ray.is_initialized()


@pytest.mark.parametrize("if_exists", ["resume", "overwrite"])
def test_resume_or_overwrite_accepts_a_taken_name(tmp_path, taken, if_exists):
    prepared = prepare_study(config(tmp_path, if_exists=if_exists))
    assert (
        prepared.directory == taken
        and (taken / "results" / "trials.parquet").read_bytes() == b"kept"
    )


@pytest.mark.parametrize("if_exists", ["resume", "overwrite"])
def test_a_sweep_whose_driver_is_alive_is_neither_resumed_nor_overwritten(
    tmp_path, taken, if_exists
):
    write_state(taken, read_state(taken).replace(lifecycle=Lifecycle.RUNNING, driver=Driver.this()))
    with pytest.raises(ConfigError, match="is being run by"):
        prepare_study(config(tmp_path, if_exists=if_exists))


def test_overwriting_keeps_the_old_sweep_aside(taken):
    kept = set_aside(taken)
    assert not taken.exists()
    assert kept.parent == taken.parent / REPLACED_DIR and kept.name.startswith("taken-")
    assert (kept / "results" / "trials.parquet").read_bytes() == b"kept"


def test_if_exists_is_checked(tmp_path):
    with pytest.raises(ConfigError, match="if_exists='replace'.*'overwrite'"):
        config(tmp_path, if_exists="replace")


def test_a_relative_data_root_is_made_absolute_for_the_trials(tmp_path, monkeypatch):
    folder = tmp_path / "data" / "coco" / "train2017"
    folder.mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (8, 8), (10, 20, 30)).save(folder / "000000000001.jpg")
    monkeypatch.chdir(tmp_path)
    prepared = prepare_study(
        config(
            tmp_path,
            overrides={"data.dataset": "coco", "data.eval_dataset": "digits", "data.root": "data"},
        )
    )
    assert prepared.plan.base_config.data.root == str(tmp_path / "data")
    assert os.path.isabs(prepared.config.overrides["data.root"])


def test_bundled_data_needs_no_root(tmp_path):
    prepared = prepare_study(config(tmp_path, dataset="digits"))
    assert prepared.plan.base_config.data.root is None


@pytest.mark.ray
def test_local_ray_serves_its_dashboard_on_loopback_only():
    import psutil

    from study.cluster import connect

    assert connect(None), "a local Ray was started"
    try:
        host, _, port = ray._private.worker.get_dashboard_url().rpartition(":")
        assert host == "127.0.0.1"
        listening = [
            c.laddr.ip
            for c in psutil.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == int(port)
        ]
        assert listening and set(listening) == {"127.0.0.1"}
    finally:
        ray.shutdown()


@pytest.mark.parametrize(
    ("recipe_name", "workers", "expected"),
    [
        ("cifar", 1, 0.25),
        ("cifar", 2, 0.5),
        ("digits", 1, 0.125),
        ("imagenet", 1, 1.0),
        ("imagenet", 4, 4.0),
    ],
)
def test_trials_share_a_gpu_by_backbone_and_view_size(recipe_name, workers, expected):
    base = recipe(recipe_name)
    assert default_gpus_per_trial(base, workers, cluster_gpus=8) == expected


def test_no_gpus_are_asked_for_on_a_cpu_cluster_or_for_cpu_trials():
    assert default_gpus_per_trial(recipe("cifar"), 1, cluster_gpus=0) == 0.0
    assert default_gpus_per_trial(recipe("cifar", device="cpu"), 1, cluster_gpus=8) == 0.0


A_GPU_MACHINE = 8
"""GPUs that ``prepare_study`` is told the local machine has (this one has none)."""
SMALL_AT_16_PX = 0.125
"""GPU_SHARES' share for the digits recipe: the ``small`` CNN at 16 px views (up to 64 px)."""


def test_the_packing_default_is_resolved_before_ray_and_an_explicit_share_is_kept(
    tmp_path, monkeypatch
):
    def prepared_share(gpus: int, **fields) -> float | None:
        monkeypatch.setattr("study.prepare.local_gpus", lambda: gpus)
        prepared = prepare_study(
            StudyConfig(
                space="overlap",
                dataset="digits",
                storage=str(tmp_path),
                tracking_uri=f"sqlite:///{tmp_path}/m.db",
                **fields,
            )
        )
        assert (prepared.plan.base_config.model.backbone, prepared.plan.base_config.views.size) == (
            "small",
            16,
        )
        return prepared.config.gpus_per_trial

    assert StudyConfig(space="overlap").gpus_per_trial is None, "unset until prepared"
    assert prepared_share(A_GPU_MACHINE) == SMALL_AT_16_PX
    assert prepared_share(A_GPU_MACHINE, workers_per_trial=2) == 2 * SMALL_AT_16_PX, "per worker"
    assert prepared_share(0) == 0.0, "no GPUs asked for on a machine without them"
    assert prepared_share(A_GPU_MACHINE, gpus_per_trial=0.5) == 0.5, "an explicit share is kept"
    assert prepared_share(A_GPU_MACHINE, gpus_per_trial=0.0) == 0.0, "even an explicit zero"
    assert not ray.is_initialized()


@pytest.mark.parametrize(
    ("fields", "stops_early"),
    [
        ({"grid": True}, False),
        ({"grid": True, "early_stopping": True}, True),
        ({}, True),
        ({"early_stopping": False}, False),
        ({"preset": "fig2a-overlap-bundled"}, False),
        ({"preset": "fig2a-overlap-bundled", "early_stopping": True}, True),
        ({"preset": "overlap-search-bundled"}, True),
    ],
)
def test_grids_run_every_trial_to_the_end_unless_early_stopping_is_asked_for(
    tmp_path, fields, stops_early
):
    from ray.tune.schedulers import ASHAScheduler

    from study.config import plan
    from study.tuner import scheduler

    study_plan = plan(
        StudyConfig(
            **{
                "space": None if "preset" in fields else "overlap",
                "grace_period": 2,
                "reduction_factor": 3,
                "epochs": 9,
                **fields,
            }
        )
    )
    assert study_plan.early_stopping is stops_early
    assert (
        study_plan.asha.grace_period,
        study_plan.asha.reduction_factor,
        study_plan.asha.rungs,
    ) == (2, 3, (2, 6))
    chosen = scheduler(study_plan)
    assert isinstance(chosen, ASHAScheduler) if stops_early else chosen is None
    if stops_early:
        assert (chosen._reduction_factor, chosen._max_t) == (3, 9)
        assert sorted(epoch for epoch, _ in chosen._brackets[0]._rungs) == list(
            study_plan.asha.rungs
        ), "ASHA's own rungs"
    assert not ray.is_initialized()


def test_early_stopping_is_a_flag_of_the_command_line_and_checked_at_the_boundary(tmp_path):
    from study_cli.commands import build_parser, study_config

    def parsed(*flags):
        return study_config(
            build_parser().parse_args(["run", "--space", "overlap", "--grid", *flags])
        ).early_stopping

    assert (parsed(), parsed("--early-stopping"), parsed("--no-early-stopping")) == (
        None,
        True,
        False,
    )
    with pytest.raises(ConfigError, match="early_stopping='yes'.*true .*false .*unset"):
        config(tmp_path, early_stopping="yes")
    with pytest.raises(ConfigError, match="early_stopping"):
        StudyConfig.from_dict({"space": "overlap", "early_stopping": "yes"})


def test_a_sweep_refuses_knn_at_fewer_epochs_than_every_one_before_ray():
    from study.config import plan

    for fields in ({"space": "overlap"}, {"preset": "fig2a-overlap-bundled"}):
        with pytest.raises(ConfigError) as error:
            plan(StudyConfig(**fields, overrides={"knn.every": 2}))
        assert (error.value.field, error.value.value) == ("knn.every", 2)
        assert "1 in a sweep" in error.value.valid and "study train" in error.value.valid
    assert plan(StudyConfig(space="overlap", overrides={"knn.every": 1})).base_config.knn.every == 1
    assert not ray.is_initialized()
