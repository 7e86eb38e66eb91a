"""What to tell a user whose install lacks a package the ``study`` command imports: the package
and the command that installs it, from this distribution's own requirements (so with its pin)."""

from __future__ import annotations

import re
from importlib import metadata

DISTRIBUTION = "spatial-study"
OWN_PACKAGES = frozenset({"study", "study_cli", "trainables", "search_spaces", "dashboards"})
"""This distribution's import packages: a missing one is a broken install or a bug, not a
missing dependency."""
DISTRIBUTIONS = {
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "PIL": "pillow",
    "optuna_dashboard": "optuna-dashboard",
}
"""Import names that differ from the distribution that installs them."""
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def distribution_of(module: str) -> str:
    top = module.partition(".")[0]
    return DISTRIBUTIONS.get(top, top)


def requirement_of(distribution: str) -> str:
    """The requirement this distribution declares for ``distribution`` (pin and extras as pip
    takes them; not one of an optional extra's), else the bare name."""
    try:
        declared = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        declared = []
    for line in declared:
        requirement, _, marker = line.partition(";")
        name = NAME.match(requirement.strip())
        if name and _normal(name.group()) == _normal(distribution) and not marker.strip():
            return requirement.strip().replace(" ", "")
    return distribution


def install_hint(module: str | None) -> str:
    """One line: the missing package and how to install it."""
    distribution = distribution_of(module or "")
    return (
        f"the package {distribution!r} is not installed (import {module!r} failed): "
        f"pip install '{requirement_of(distribution)}', "
        f"or pip install {DISTRIBUTION} for the whole platform"
    )
