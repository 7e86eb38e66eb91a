"""Bad input is refused before Ray starts, with the field, the value and what is valid; the
config loaders are fuzzed (YAML mappings and ``--set`` overrides): what they accept satisfies the
configs' invariants and holds the values given, and what they refuse names a field it was given."""

import dataclasses
import math
import socket
from collections.abc import Callable
from typing import Any

import pytest
import ray
import torch
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from search_spaces import PRESETS, SEARCH_SPACES
from study.config import IF_EXISTS, StudyConfig, plan
from study_cli.commands import build_parser, main, study_config
from trainables.config import TrainConfig, flatten
from trainables.data import DATASETS
from trainables.loss import MARGIN_MODES
from trainables.model import BACKBONES
from trainables.recipes import RECIPES
from trainables.validation import ConfigError
from trainables.views import VIEW_FAMILIES

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
TRAIN_DEFAULTS = flatten(TrainConfig().to_dict())
STUDY_DEFAULTS = StudyConfig(space="overlap").to_dict()
CHOICES = {
    "data.dataset": DATASETS,
    "data.eval_dataset": DATASETS,
    "dataset": DATASETS,
    "eval_dataset": DATASETS,
    "views.family": VIEW_FAMILIES,
    "model.backbone": BACKBONES,
    "margin.mode": MARGIN_MODES,
    "optim.schedule": ("cosine", "constant"),
    "device": ("auto", "cpu", "cuda"),
    "space": SEARCH_SPACES,
    "preset": PRESETS,
    "recipe": RECIPES,
    "if_exists": IF_EXISTS,
}
COUNTS = {
    "data.limit",
    "data.eval_limit",
    "knn.k",
    "num_samples",
    "epochs",
    "max_concurrent_trials",
}
"""Integer fields whose default is null."""
EDGES = (0.0, 0.5, 1.0, 2.0, -0.5, math.inf)
"""Numbers on and around the bounds of the numeric fields (each range is within [0, 2] or
unbounded above)."""


def near_valid(key: str, defaults: dict[str, Any]) -> st.SearchStrategy:
    """Values of the field's own type, on and around its bounds, so that the fuzzers also draw
    many accepted inputs (junk alone is nearly always refused)."""
    default = defaults.get(key)
    if key in ("space", "preset"):  # exactly one of them: the other is null
        return st.one_of(st.none(), st.sampled_from(sorted(CHOICES[key])))
    if key in CHOICES:
        return st.sampled_from(sorted(CHOICES[key]))
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int) or key in COUNTS:
        return st.integers(0, 64)
    if isinstance(default, float) or key == "gpus_per_trial":
        return st.one_of(st.sampled_from(EDGES), st.floats(0, 1))
    if isinstance(default, tuple):
        return st.lists(st.one_of(st.sampled_from(EDGES), st.floats(0, 1)), max_size=3)
    return st.just(default)


JUNK_SHARE = 4
"""One value in this many is junk of any type, the rest near-valid values of the key."""


def junk_or_near_valid(key: str, defaults: dict[str, Any]) -> st.SearchStrategy:
    near = near_valid(key, defaults)
    return st.one_of(VALUES, *[near] * (JUNK_SHARE - 1))


def entries(keys: list[str], defaults: dict[str, Any], max_size: int) -> st.SearchStrategy:
    """Mappings of some of ``keys`` to junk or to near-valid values of each key."""
    pair = st.sampled_from(keys).flatmap(
        lambda key: st.tuples(st.just(key), junk_or_near_valid(key, defaults))
    )
    return st.lists(pair, max_size=max_size).map(dict)


def yaml_text(value: Any) -> str:
    """``value`` as a user would type it after ``--set KEY=``."""
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


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


Check = Callable[[Any], bool]


def integer(low: int | None = None, high: int | None = None) -> Check:
    return lambda value: (
        isinstance(value, int)
        and not isinstance(value, bool)
        and (low is None or value >= low)
        and (high is None or value <= high)
    )


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Check:
    """A real number in the interval; an unbounded end is open, so infinity is never one."""
    return lambda value: (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (low is None or (value > low if low_open else value >= low))
        and (high is None or (value < high if high_open else value <= high))
    )


def one_of(choices) -> Check:
    return lambda value: isinstance(value, str) and value in choices


def optional(check: Check) -> Check:
    return lambda value: value is None or check(value)


def text(value: Any) -> bool:
    return isinstance(value, str)


def flag(value: Any) -> bool:
    return isinstance(value, bool)


def unit(value: Any) -> bool:
    return number(0, 1)(value)


def sigma_pair(value: Any) -> bool:
    return (
        isinstance(value, tuple) and len(value) == 2 and all(map(number(0, low_open=True), value))
    ) and value[0] <= value[1]


STUDY_INVARIANTS: dict[str, Check] = {
    # every StudyConfig field, as its docstring and the command line's help state it
    "space": optional(one_of(SEARCH_SPACES)),
    "preset": optional(one_of(PRESETS)),
    "grid": flag,
    "grid_only": lambda value: (
        isinstance(value, dict) and all(isinstance(values, list) for values in value.values())
    ),
    "dataset": optional(one_of(DATASETS)),
    "eval_dataset": optional(one_of(DATASETS)),
    "recipe": optional(one_of(RECIPES)),
    "overrides": lambda value: isinstance(value, dict),
    "num_samples": optional(integer(1)),
    "epochs": optional(integer(1)),
    "seeds": lambda value: (
        isinstance(value, tuple) and len(value) > 0 and all(map(integer(0), value))
    ),
    "seed": integer(0),
    "name": optional(lambda value: isinstance(value, str) and 0 < len(value) <= 100),
    "storage": text,
    "if_exists": one_of(IF_EXISTS),
    "tracking_uri": lambda value: isinstance(value, str) and value != "",
    "address": optional(text),
    "workers_per_trial": integer(1),
    "cpus_per_worker": number(0),
    "gpus_per_trial": optional(number(0)),
    "max_concurrent_trials": optional(integer(1)),
    "grace_period": integer(1),
    "reduction_factor": integer(2),
    "early_stopping": optional(flag),
    "max_failures": integer(0),
    "checkpoints_to_keep": integer(1),
    "verbose": flag,
}
TRAIN_INVARIANTS: dict[str, Check] = {
    # every TrainConfig leaf, as the sections' docstrings state them
    "data.dataset": one_of(DATASETS),
    "data.eval_dataset": one_of(DATASETS),
    "data.root": optional(text),
    "data.train_split": text,
    "data.limit": optional(integer(1)),
    "data.eval_limit": optional(integer(1)),
    "views.family": one_of(VIEW_FAMILIES),
    "views.params": lambda value: isinstance(value, dict),
    "views.size": integer(1),
    "photometric.brightness": unit,
    "photometric.contrast": unit,
    "photometric.saturation": unit,
    "photometric.hue": number(0, 0.5),
    "photometric.jitter_p": unit,
    "photometric.grayscale_p": unit,
    "photometric.flip_p": unit,
    "photometric.blur_p": unit,
    "photometric.blur_sigma": sigma_pair,
    "margin.mode": one_of(MARGIN_MODES),
    "margin.m": number(0, 2),
    "margin.k": number(0),
    "model.backbone": one_of(BACKBONES),
    "model.projector_dim": integer(1),
    "model.projector_layers": integer(1, 3),
    "model.predictor_hidden_dim": integer(1),
    "model.zero_init_residual": flag,
    "optim.base_lr": number(0, low_open=True),
    "optim.momentum": number(0, 1, high_open=True),
    "optim.weight_decay": number(0),
    "optim.schedule": one_of(("cosine", "constant")),
    "optim.warmup_epochs": integer(0),
    "optim.fix_predictor_lr": flag,
    "knn.k": integer(1),
    "knn.temperature": number(0, low_open=True),
    "knn.every": integer(1, 1),  # a sweep scores every epoch
    "health.collapse_ratio": number(0, 1, low_open=True),
    "health.collapse_epochs": integer(0),
    "epochs": integer(1),
    "batch_size": integer(2),
    "seed": integer(0),
    "device": one_of(("auto", "cpu", "cuda")),
    "loader_workers": integer(0),
}
STUDY_TO_TRAIN = {
    "dataset": "data.dataset",
    "eval_dataset": "data.eval_dataset",
    "epochs": "epochs",
}
"""Study fields that set a TrainConfig path (unless an override sets that path too)."""
DEPENDS_ON = {
    # a field whose valid values depend on others: an error may name it when those were given
    "optim.warmup_epochs": {"epochs"},
    "knn.k": {"data.eval_dataset", "data.dataset"},
    "views.params": {"data.dataset", "views.size", "views.family"},
    "space/preset": {"space", "preset"},
}
NORMALISED_WHEN_NULL = {"knn.k", "data.eval_dataset"}
"""TrainConfig paths where null means "the default for the dataset"."""


def plain(value: Any) -> Any:
    """``value`` with tuples as lists and NaN as a marker, to compare what was given with what a
    config holds (YAML has no tuples; NaN equals nothing)."""
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return "<NaN>"
    return value


def config_value(config: TrainConfig, path: str) -> Any:
    node: Any = config.to_dict()
    for key in path.split("."):
        node = node[key]
    return node


def assert_invariants(config: StudyConfig, base: TrainConfig) -> None:
    """The accepted configs satisfy every stated invariant, and read back as themselves."""
    assert set(STUDY_INVARIANTS) == {field.name for field in dataclasses.fields(StudyConfig)}
    for name, check in STUDY_INVARIANTS.items():
        assert check(getattr(config, name)), f"accepted {name}={getattr(config, name)!r}"
    assert (config.space is None) != (config.preset is None)
    leaves = {path for path in flatten(base.to_dict()) if not path.startswith("views.params")}
    assert leaves <= set(TRAIN_INVARIANTS), "a new field needs its invariant here"
    for path, check in TRAIN_INVARIANTS.items():
        assert check(config_value(base, path)), f"accepted {path}={config_value(base, path)!r}"
    assert base.optim.warmup_epochs < base.epochs
    smallest = DATASETS[base.data.eval_dataset].smallest_class
    assert smallest is None or base.knn.k <= smallest
    assert StudyConfig.from_dict(config.to_dict()) == config, "re-validated as it is"
    assert TrainConfig.from_dict(base.to_dict()) == base, "re-validated as it is"


def set_alone(path: str, given: dict[str, Any]) -> bool:
    """Whether no other given path is inside or above ``path`` (those would change it)."""
    return not any(
        other != path and (other.startswith(path + ".") or path.startswith(other + "."))
        for other in given
    )


def assert_values_set(
    config: StudyConfig, base: TrainConfig, fields: dict[str, Any], overrides: dict[str, Any]
) -> None:
    """Each value given is the value the configs hold."""
    for name, value in fields.items():
        if name == "overrides":
            continue
        held = getattr(config, name)
        if name == "grid_only":
            value = {key: item if isinstance(item, list) else [item] for key, item in value.items()}
        assert plain(held) == plain(value), name
    for path, value in overrides.items():
        if set_alone(path, overrides) and not (value is None and path in NORMALISED_WHEN_NULL):
            assert plain(config_value(base, path)) == plain(value), path
    for name, path in STUDY_TO_TRAIN.items():
        if fields.get(name) is not None and path not in overrides:
            assert config_value(base, path) == fields[name], path


def config_path(field: str) -> str:
    """The dotted config path an error's field stands for: view families name their parameters
    ``<family>.<parameter>`` (``random_crop.hole``), which is ``views.params.<parameter>``."""
    family, dot, parameter = field.partition(".")
    return f"views.params.{parameter}" if family in VIEW_FAMILIES and dot else field


def related(field: str, given: str) -> bool:
    """``field`` is ``given``, inside it (``views.params.hole`` of a ``views.params`` given), or
    the unknown section that holds it (``x``, of an override ``x.y``)."""
    field = config_path(field)
    return field == given or field.startswith(given + ".") or given.startswith(field + ".")


def assert_names_a_given_field(
    error: ConfigError, fields: dict[str, Any], overrides: dict[str, Any]
) -> None:
    """A refusal names a study field or override path that was given (or one whose valid values
    depend on one given), and the value it names is a value given for that name (a study field
    and an override can share a name: ``epochs``, ``seed``)."""
    given: dict[str, list[Any]] = {}
    for name, value in [*fields.items(), *overrides.items()]:
        given.setdefault(name, []).append(value)
    touched = set(given) | {STUDY_TO_TRAIN[name] for name in fields if name in STUDY_TO_TRAIN}
    causes = {
        cause
        for field, causes in DEPENDS_ON.items()
        if related(error.field, field)
        for cause in causes
    }
    assert any(related(error.field, name) for name in touched) or touched & causes, (
        f"{error} names none of {sorted(given)}"
    )
    message = str(error)
    assert message.startswith(f"{error.field}={error.value!r} is invalid: expected ") and (
        error.valid
    )
    path = config_path(error.field)
    if path in given and path not in DEPENDS_ON:
        assert plain(error.value) in [plain(value) for value in given[path]], (
            f"{error} does not repeat the value given, {given[path]!r}"
        )


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    entries([*STUDY_KEYS, "nonsense"], STUDY_DEFAULTS, max_size=4),
    entries([*TRAIN_KEYS, "views.params.overlap", "model.nope"], TRAIN_DEFAULTS, max_size=3),
)
# an unbounded interval is open at infinity ("[0, inf)"): infinity is no number of CPUs or decay
@example(fields={"cpus_per_worker": math.inf}, overrides={})
@example(fields={"nonsense": 1}, overrides={})  # refused, naming the unknown field
@example(fields={}, overrides={"model.nope": 2})
@example(
    fields={"grace_period": 2, "seeds": [1, 0], "dataset": "digits", "gpus_per_trial": 0.5},
    overrides={"optim.base_lr": 0.1, "views.size": 24, "knn.k": None},
)  # accepted: the seeds as given, knn.k the dataset's default
@example(fields={}, overrides={"optim.weight_decay": math.inf})
@example(fields={"grid_only": {"": None}}, overrides={})  # refused, repeating it as given
def test_a_study_yaml_is_valid_or_refused_with_a_config_error(fields, overrides):
    """Any YAML mapping of study fields (and overrides) plans to configs that hold what it says
    and satisfy every invariant, or is refused naming a field it set."""
    data = yaml.safe_load(yaml.safe_dump({"space": "overlap", **fields, "overrides": overrides}))
    study_fields = {name: value for name, value in data.items() if name != "overrides"}
    try:
        config = StudyConfig.from_dict(data)
        study_plan = plan(config)
    except ConfigError as error:
        assert_names_a_given_field(error, study_fields, data["overrides"])
    else:
        assert_invariants(config, study_plan.base_config)
        assert_values_set(config, study_plan.base_config, study_fields, data["overrides"])


@settings(max_examples=150)
@given(
    st.lists(
        st.sampled_from([*TRAIN_KEYS, "views.params.hole", "x.y"]).flatmap(
            lambda key: st.tuples(
                st.just(key),
                st.one_of(st.text(max_size=16), near_valid(key, TRAIN_DEFAULTS).map(yaml_text)),
            )
        ),
        max_size=3,
    )
)
@example(pairs=[("margin.k", ".inf")])
@example(pairs=[("views.size", "0")])  # refused, naming views.size (not "size")
def test_set_overrides_are_valid_or_refused_with_a_config_error(pairs):
    """``--set KEY=TEXT`` with arbitrary text, parsed as YAML as the CLI does: the config holds
    each value as YAML reads it, or the refusal names the key (or ``--set`` and the pair)."""
    args = build_parser().parse_args(
        ["run", "--space", "cutout", *[f"--set={key}={text}" for key, text in pairs]]
    )
    try:
        config = study_config(args)
        study_plan = plan(config)
    except ConfigError as error:
        if error.field == "--set":
            assert error.value in [f"{key}={text}" for key, text in pairs]
            assert str(error).startswith(f"--set={error.value!r} is invalid")
        else:
            parsed = {key: yaml.safe_load(text) for key, text in pairs}
            assert_names_a_given_field(error, {"space": "cutout"}, parsed)
    else:
        parsed = {key: yaml.safe_load(text) for key, text in pairs}
        assert plain(config.overrides) == plain(parsed)
        assert_invariants(config, study_plan.base_config)
        assert_values_set(config, study_plan.base_config, {"space": "cutout"}, parsed)


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
