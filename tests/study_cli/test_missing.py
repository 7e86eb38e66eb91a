"""A package missing at run time is named in one line with the pinned command that installs it
(read from this distribution's own requirements), and exits 2; a missing module of the project
itself is a bug and is raised as it is."""

import pytest

from study_cli import commands
from study_cli.missing import install_hint


@pytest.mark.parametrize(
    ("module", "command"),
    [
        ("optuna", "pip install 'optuna==5.0.0'"),
        ("ray.tune", "pip install 'ray[default,train,tune]==2.60.0'"),
        ("optuna_dashboard", "pip install 'optuna-dashboard==0.21.0'"),
        ("sklearn", "pip install 'scikit-learn>=1.4'"),
        ("not_a_dependency", "pip install 'not_a_dependency'"),
    ],
)
def test_the_hint_names_the_package_and_its_pinned_install(module, command):
    assert command in install_hint(module)


def failing_import(name):
    def command(args):
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    return command


def test_a_missing_dependency_exits_2_with_one_line(monkeypatch, capsys):
    monkeypatch.setitem(commands.COMMANDS, "ls", failing_import("mlflow.tracking"))
    assert commands.main(["ls"]) == commands.EXIT_BAD_INPUT
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("study: error: the package 'mlflow' is not installed")
    assert "pip install 'mlflow==3.17.2'" in line


def test_a_missing_module_of_the_project_is_raised(monkeypatch):
    monkeypatch.setitem(commands.COMMANDS, "ls", failing_import("study.nonexistent"))
    with pytest.raises(ModuleNotFoundError):
        commands.main(["ls"])
