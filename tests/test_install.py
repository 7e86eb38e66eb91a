"""A plain ``pip install`` (no extras) gives the platform and a working ``study`` command: its help,
a bad input refused with exit 2 before any cluster work, and a package removed after the install
named in one line with the command that installs it (exit 2, no traceback).

pip resolves a plain install from the index in a fresh, empty virtual environment (what it would
install, exact versions); the project is then built and installed as a wheel into a second fresh
environment whose dependencies are hard links to this one's, so that pip installs nothing but the
project and the test takes about a minute, not the minutes of unpacking PyTorch.
"""

import json
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

PLATFORM = ("ray", "optuna", "optuna-dashboard", "mlflow", "pyarrow", "torch")
# this environment's editable install of the project, which the installed wheel replaces
EDITABLE_INSTALL = ("__editable__*", "spatial_study-*.dist-info")

pytestmark = [pytest.mark.slow, pytest.mark.extended]


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


def fresh_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return path


def site_packages(venv: Path) -> Path:
    (found,) = venv.glob("lib/python*/site-packages")
    return found


def pip(venv: Path, *arguments: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", *arguments],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        env=clean_environment(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:  # another file system
        shutil.copy2(source, destination)


@pytest.fixture(scope="module")
def resolved(tmp_path_factory) -> dict[str, str]:
    """What a plain install puts into an empty environment: distribution name -> version."""
    root = tmp_path_factory.mktemp("plain-resolve")
    venv = fresh_venv(root / "venv")
    report = root / "report.json"
    pip(
        venv,
        "install",
        "--quiet",
        "--dry-run",
        "--ignore-installed",
        "--report",
        str(report),
        "--constraint",
        str(ROOT / "constraints.txt"),
        str(source_copy(root / "source")),
    )
    return {
        entry["metadata"]["name"].lower(): entry["metadata"]["version"]
        for entry in json.loads(report.read_text())["install"]
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("plain-install")
    venv = fresh_venv(root / "venv")
    shutil.copytree(
        Path(sys.prefix) / site_packages(Path(sys.prefix)).relative_to(sys.prefix),
        site_packages(venv),
        ignore=shutil.ignore_patterns("__pycache__", *EDITABLE_INSTALL),
        copy_function=link_or_copy,
        dirs_exist_ok=True,
    )
    installing = pip(
        venv,
        "install",
        "--constraint",
        str(ROOT / "constraints.txt"),
        str(source_copy(root / "source")),
    )
    assert "Successfully installed spatial-study-" in installing.stdout, installing.stdout[-2000:]
    assert "\nCollecting " not in installing.stdout.replace("Collecting spatial-study", ""), (
        "every dependency was already there: pip installed the project alone"
    )
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


def test_the_plain_install_is_the_platform(resolved):
    pinned = dict(
        line.lower().split("==")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    for package in PLATFORM:
        assert package in resolved, f"{package} is part of a plain install"
        assert resolved[package] == pinned[package].split()[0], f"{package} at its pinned version"


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
