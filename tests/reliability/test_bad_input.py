"""Bad input is refused before Ray starts, with the field, the value and what is valid; the
config loaders are fuzzed (YAML mappings and ``--set`` overrides) for any other exception."""

import socket

import pytest
import ray
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from study.config import StudyConfig, plan
from study_cli.commands import build_parser, main, study_config
from trainables.config import TrainConfig, flatten
from trainables.validation import ConfigError

TRAIN_KEYS = sorted(flatten(TrainConfig().to_dict()))
STUDY_KEYS = sorted(StudyConfig(space="overlap").to_dict())
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["overlap", "cutout", "blur", "digits", "small", "../../etc", "[0.2, 0.5]"]),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=6), SCALARS, max_size=2),
)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def refused(args, tmp_path, capsys):
    code = main(["run", *args, "--storage", str(tmp_path / "runs")])
    assert code == 2
    assert not ray.is_initialized(), "nothing started"
    assert not (tmp_path / "runs").exists(), "nothing written"
    return capsys.readouterr().err


def test_an_unreachable_tracking_server_fails_the_sweep_before_any_trial(tmp_path, capsys):
    uri = f"http://127.0.0.1:{free_port()}"
    error = refused(["--space", "overlap", "--tracking-uri", uri], tmp_path, capsys)
    assert f"tracking_uri='{uri}'" in error and "reachable MLflow tracking server" in error


@pytest.mark.skipif(torch.cuda.device_count() > 0, reason="this machine has GPUs")
def test_more_gpus_per_trial_than_the_machine_has_is_refused(tmp_path, capsys):
    error = refused(
        [
            "--space",
            "overlap",
            "--gpus-per-trial",
            "1",
            "--tracking-uri",
            f"sqlite:///{tmp_path / 'm.db'}",
        ],
        tmp_path,
        capsys,
    )
    assert "gpus_per_trial=1.0" in error and "at most 0" in error


def test_a_sqlite_store_in_a_missing_folder_is_refused(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/no/such/folder/mlflow.db"
    error = refused(["--space", "overlap", "--tracking-uri", uri], tmp_path, capsys)
    assert "does not exist" in error


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.dictionaries(st.sampled_from([*STUDY_KEYS, "nonsense"]), VALUES, max_size=4),
    st.dictionaries(
        st.sampled_from([*TRAIN_KEYS, "views.params.overlap", "model.nope"]), VALUES, max_size=3
    ),
)
def test_a_study_yaml_is_valid_or_refused_with_a_config_error(fields, overrides):
    """Any YAML mapping of study fields (and overrides) loads and plans, or raises ConfigError."""
    data = yaml.safe_load(yaml.safe_dump({"space": "overlap", **fields, "overrides": overrides}))
    try:
        plan(StudyConfig.from_dict(data))
    except ConfigError as error:
        assert error.field and str(error)


@settings(max_examples=150)
@given(
    st.lists(
        st.tuples(st.sampled_from([*TRAIN_KEYS, "views.params.hole", "x.y"]), st.text(max_size=16)),
        max_size=3,
    )
)
def test_set_overrides_are_valid_or_refused_with_a_config_error(pairs):
    """``--set KEY=TEXT`` with arbitrary text, parsed as YAML as the CLI does."""
    args = build_parser().parse_args(
        ["run", "--space", "cutout", *[f"--set={key}={text}" for key, text in pairs]]
    )
    try:
        plan(study_config(args))
    except ConfigError as error:
        assert error.field and str(error)


def test_docs_reliability_md_is_current_and_every_bad_input_is_refused():
    from tests.reliability.table import ROOT, render

    table = render()
    assert "ACCEPTED" not in table
    assert (ROOT / "docs" / "reliability.md").read_text() == table, (
        "regenerate: python -m tests.reliability.table > docs/reliability.md"
    )


def test_credentials_in_the_tracking_uri_are_refused_without_repeating_them(tmp_path, capsys):
    error = refused(
        ["--space", "overlap", "--tracking-uri", "https://alice:hunter2@mlflow.example.org"],
        tmp_path,
        capsys,
    )
    assert "hunter2" not in error and "alice" not in error
    assert (
        "tracking_uri='https://***@mlflow.example.org'" in error
        and "MLFLOW_TRACKING_TOKEN" in error
    )


def test_a_missing_data_root_is_refused_naming_the_expected_layout(tmp_path, capsys):
    store = ["--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]
    error = refused(
        [
            "--space",
            "overlap",
            "--set",
            "data.dataset=cifar10",
            "--set",
            f"data.root={tmp_path}/none",
            *store,
        ],
        tmp_path,
        capsys,
    )
    assert f"data.root='{tmp_path}/none'" in error and "cifar-10-batches-py" in error


def test_resume_and_overwrite_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--space", "overlap", "--resume", "--overwrite"])
    assert exit_info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
