import subprocess
import sys

import pytest
import yaml

from study.cli import load_config, main, parse_overrides
from trainables.validation import ConfigError


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "study", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "epochs=0"], "epochs=0 is invalid: expected an integer in [1, inf)"),
        (["--set", "views.family=overlap", "--set", "views.params.overlap=1.5"], "overlap.overlap=1.5"),
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
    path.write_text(yaml.safe_dump({"views": {"family": "patch", "params": {"patch": 0.4}}, "epochs": 9}))
    config = load_config("digits", path, parse_overrides(["epochs=3", "margin.mode=fixed"]))
    assert (config.views.family, config.views.params, config.epochs, config.margin.mode) == ("patch", {"patch": 0.4}, 3, "fixed")
    assert config.model.backbone == "small"
    with pytest.raises(ConfigError, match="--config"):
        load_config("digits", tmp_path / "missing.yaml", {})


def test_train_command_runs_and_prints_a_table(tmp_path):
    result = run_cli(
        "train", "--set", "epochs=1", "--set", "data.limit=128", "--set", "data.eval_limit=100",
        "--set", "views.size=16", "--out", str(tmp_path / "run"),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("untrained encoder (same seed): knn_top1=")
    assert "knn_top1" in lines[2]
    epoch_row = lines[3].split()
    assert epoch_row[0] == "1" and 0 <= float(epoch_row[2]) <= 1
    assert (tmp_path / "run" / "epoch_0001" / "checkpoint.pt").is_file()
