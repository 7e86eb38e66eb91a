"""A plain ``pip install`` (no extras) into a fresh virtual environment gives a working ``study``
command: its help, a bad input refused with exit 2 before any cluster work, and a package removed
after the install named in one line with the command that installs it (exit 2, no traceback).

Slow: the install takes minutes (PyTorch alone is several GB; pip's cache spares the download).
"""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL_TIMEOUT_S = 1200
COMMAND_TIMEOUT_S = 300

pytestmark = pytest.mark.slow


def source_copy(destination: Path) -> Path:
    """What the distribution is built from (setuptools writes its build files there, not here)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    destination.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, destination / name)
    for pattern in packages:
        for package in ROOT.glob(pattern.removesuffix("*")):
            if package.is_dir() and (package / "__init__.py").exists():
                shutil.copytree(
                    package,
                    destination / package.name,
                    ignore=shutil.ignore_patterns("__pycache__"),
                )
    return destination


def clean_environment() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("plain-install")
    source = source_copy(root / "source")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--constraint",
            str(ROOT / "constraints.txt"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        env=clean_environment(),
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    return venv, root


def study(venv: Path, cwd: Path, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(venv / "bin" / "study"), *arguments],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        cwd=cwd,
        env=clean_environment(),
    )


def test_the_plain_install_is_the_platform(installed):
    venv, _ = installed
    listed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    for package in ("ray==", "optuna==", "optuna-dashboard==", "mlflow==", "pyarrow==", "torch=="):
        assert f"\n{package}" in f"\n{listed}", f"{package} is part of a plain install"


def test_study_help_and_a_refused_bad_input(installed):
    venv, root = installed
    helped = study(venv, root, "--help")
    assert helped.returncode == 0 and "usage: study" in helped.stdout, helped.stderr
    refused = study(venv, root, "run", "--space", "overlap", "--num-samples", "0")
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().splitlines() == [
        "study: error: num_samples=0 is invalid: expected an integer in [1, inf)"
    ]
    assert not (root / "runs").exists(), "refused before anything was written"


def test_a_missing_package_is_named_with_its_install_command(installed):
    venv, root = installed
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "uninstall", "--quiet", "--yes", "optuna"],
        check=True,
        capture_output=True,
    )
    failed = study(venv, root, "run", "--space", "overlap", "--dataset", "digits")
    assert failed.returncode == 2
    assert "Traceback" not in failed.stderr
    (line,) = failed.stderr.strip().splitlines()
    assert "'optuna'" in line and "pip install 'optuna==5.0.0'" in line, line
