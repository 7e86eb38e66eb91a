import subprocess
import sys

import pytest
import yaml

from study_cli.commands import load_config, main, parse_overrides
from trainables.validation import ConfigError


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "study_cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "epochs=0"], "epochs=0 is invalid: expected an integer in [1, inf)"),
        (
            ["--set", "views.family=overlap", "--set", "views.params.overlap=1.5"],
            "overlap.overlap=1.5",
        ),
        (["--set", "margin.k=-2"], "margin.k=-2"),
        (["--set", "data.dataset=imagenet"], "data.dataset='imagenet'"),
        (["--set", "novalue"], "--set='novalue'"),
        (["--recipe", "mnist"], "recipe='mnist'"),
    ],
)
def test_bad_input_exits_2_naming_the_field(args, message, capsys):
    assert main(["train", *args]) == 2
    assert message in capsys.readouterr().err


def test_yaml_file_and_overrides_layer_on_the_recipe(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        yaml.safe_dump({"views": {"family": "patch", "params": {"patch": 0.4}}, "epochs": 9})
    )
    config = load_config("digits", path, parse_overrides(["epochs=3", "margin.mode=fixed"]))
    assert (config.views.family, config.views.params, config.epochs, config.margin.mode) == (
        "patch",
        {"patch": 0.4},
        3,
        "fixed",
    )
    assert config.model.backbone == "small"
    with pytest.raises(ConfigError, match="--config"):
        load_config("digits", tmp_path / "missing.yaml", {})


def test_train_command_runs_and_prints_a_table(tmp_path):
    result = run_cli(
        "train",
        "--set",
        "epochs=1",
        "--set",
        "data.limit=128",
        "--set",
        "data.eval_limit=100",
        "--set",
        "views.size=16",
        "--out",
        str(tmp_path / "run"),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert (
        lines[1].startswith("baselines (kNN top-1, same seed): untrained encoder ")
        and ", raw pixels " in lines[1]
    )
    final = float(lines[-2].split("knn_top1=")[1].split()[0])
    assert (
        lines[-1].startswith("against the baselines: ")
        and f"; best {final:.3f} = untrained " in lines[-1]
    )
    assert "knn_top1" in lines[2]
    epoch_row = lines[3].split()
    assert epoch_row[0] == "1" and 0 <= float(epoch_row[2]) <= 1
    assert (tmp_path / "run" / "epoch_0001" / "checkpoint.pt").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--space", "zoom"], "space='zoom'"),
        (["--space", "overlap", "--preset", "fig2a-overlap"], "exactly one of --space or --preset"),
        (["--preset", "fig9"], "preset='fig9'"),
        (["--space", "overlap", "--epochs", "0"], "epochs=0"),
        (["--space", "overlap", "--dataset", "mnist"], "dataset='mnist'"),
        (["--space", "overlap", "--set", "margin.k=-1"], "margin.k=-1"),
        (["--space", "overlap", "--name", "../../etc"], "name='../../etc'"),
        (["--space", "overlap", "--reduction-factor", "1"], "reduction_factor=1"),
        (["--space", "cutout", "--set", "views.size=4"], "views.size=4"),
        (
            ["--space", "overlap", "--grid", "--grid-only", "views.params.overlap=[0.35]"],
            "grid_only.views.params.overlap=0.35",
        ),
        (
            ["--space", "overlap", "--grid", "--grid-only", "views.params.patch=0.3"],
            "grid_only='views.params.patch'",
        ),
        (["--space", "overlap", "--grid-only", "views.params.overlap=0.3"], "only with a grid"),
        (["--space", "overlap", "--grid", "--grid-only", "oops"], "--grid-only='oops'"),
    ],
)
def test_bad_sweep_input_exits_2_before_any_cluster_work(args, message, capsys, tmp_path):
    import ray

    assert (
        main(
            [
                "run",
                *args,
                "--storage",
                str(tmp_path / "runs"),
                "--tracking-uri",
                f"sqlite:///{tmp_path / 'm.db'}",
            ]
        )
        == 2
    )
    assert message in capsys.readouterr().err
    assert not ray.is_initialized()
    assert not (tmp_path / "runs").exists() and not (tmp_path / "m.db").exists()


def test_study_yaml_and_flags_combine(tmp_path):
    from study_cli.commands import build_parser, study_config

    path = tmp_path / "study.yaml"
    path.write_text(
        yaml.safe_dump(
            {"preset": "fig2b-patch-bundled", "epochs": 2, "overrides": {"data.limit": 64}}
        )
    )
    args = build_parser().parse_args(
        ["run", "--config", str(path), "--epochs", "3", "--set", "optim.base_lr=0.1"]
    )
    config = study_config(args)
    assert (config.preset, config.epochs) == ("fig2b-patch-bundled", 3)
    assert config.overrides == {"data.limit": 64, "optim.base_lr": 0.1}


def test_grid_only_keeps_the_matching_grid_points():
    from study.config import plan
    from study_cli.commands import build_parser, study_config

    args = build_parser().parse_args(
        [
            "run",
            "--preset",
            "fig4-cutout-bundled",
            "--grid-only",
            "views.params.fill=[zero]",
            "--grid-only",
            "seed=0",
        ]
    )
    study_plan = plan(study_config(args))
    points = [
        (point["views.params.hole"], point["views.params.fill"], point["seed"])
        for point in study_plan.points
    ]
    assert sorted(points) == [(0.3, "zero", 0), (0.5, "zero", 0)]
    assert study_plan.num_samples == 2
    enqueued = {tuple(sorted(point.items())) for point in study_plan.points}
    assert len(enqueued) == 2, "each kept point runs once"
