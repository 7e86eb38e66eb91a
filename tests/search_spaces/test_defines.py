"""Each define-by-run against a real TPE study: ranges, conditional branches, valid configs."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from search_spaces import SEARCH_SPACES, cutout, exclusive, margin, overlap, patch
from tests.search_spaces.helpers import assert_overrides_applied, run_define
from trainables.recipes import recipe
from trainables.validation import ConfigError
from trainables.views import make_views

TRIALS = 60
FLOAT_RANGES = {
    "views.params.overlap": (0.1, 0.9),
    "views.params.patch": (0.1, 0.9),
    "views.params.gap": (0.01, 0.11),
    "views.params.hole": (0.1, 0.7),
    "margin.m": (0.05, 0.5),
    "margin.k": (0.0, 2.0),
}
CHOICES = {
    "views.params.fill": {"zero", "blur", "none"},
    "margin.mode": {"none", "fixed", "distance"},
}
ALWAYS_SUGGESTED = {
    "overlap": {"views.params.overlap"},
    "patch": {"views.params.patch"},
    "exclusive": {"views.params.gap"},
    "cutout": {"views.params.hole", "views.params.fill"},
    "margin": {"margin.mode"},
}
SUGGESTED_ON_BRANCH = {
    # (parameter, value drawn) -> the parameters suggested only on that branch
    ("views.params.fill", "blur"): {"views.params.blur"},
    ("margin.mode", "fixed"): {"margin.m"},
    ("margin.mode", "distance"): {"margin.k"},
}


def expected_keys(name: str, params: dict) -> set[str]:
    """Exactly the parameters ``name``'s define-by-run suggests on a trial that drew ``params``:
    its unconditional ones and those of the branches taken."""
    keys = set(ALWAYS_SUGGESTED[name])
    for key in ALWAYS_SUGGESTED[name]:
        keys |= SUGGESTED_ON_BRANCH.get((key, params.get(key)), set())
    return keys


EXPECTED_CONSTANTS = {
    "overlap": {"views.family": "overlap"},
    "patch": {"views.family": "patch"},
    "exclusive": {"views.family": "exclusive", "views.params.crop": 0.1},
    "cutout": {"views.family": "cutout"},
    "margin": {},
}


def check_param(name: str, value: object, params: dict, size: int) -> None:
    if name in FLOAT_RANGES:
        low, high = FLOAT_RANGES[name]
        assert low <= value <= high, (name, value)
    elif name in CHOICES:
        assert value in CHOICES[name], (name, value)
    else:
        assert name == "views.params.blur"
        hole = params["views.params.hole"]
        assert (
            max(cutout.BLUR_RANGE[0], cutout.min_blur(hole, size)) <= value <= cutout.BLUR_RANGE[1]
        )


@pytest.mark.parametrize("size", [16, 32])
@pytest.mark.parametrize("name", sorted(SEARCH_SPACES))
def test_define_suggests_in_range_and_builds_valid_configs(name: str, size: int) -> None:
    base = recipe("digits", **{"views.size": size})
    define = SEARCH_SPACES[name].define(size)
    for trial, constants in run_define(define, TRIALS):
        assert constants == EXPECTED_CONSTANTS[name]
        assert set(trial.params) == expected_keys(name, trial.params)
        for key, value in trial.params.items():
            check_param(key, value, trial.params, size)
        overrides = {**trial.params, **constants}
        config = base.replace(**overrides)
        assert_overrides_applied(config, overrides)


REGISTRY_TRIALS = 12


@pytest.mark.parametrize(
    ("module", "size"),
    [(overlap, 16), (patch, 16), (exclusive, 16), (margin, 16), (cutout, cutout.DEFAULT_SIZE)],
    ids=lambda value: getattr(value, "__name__", str(value)).rsplit(".", 1)[-1],
)
def test_module_defines_match_registry(module, size) -> None:
    """The registry's define-by-run is the module's: the same parameters and constants, trial by
    trial, from the same seeded sampler."""
    name = module.__name__.rsplit(".", 1)[-1]
    from_module = run_define(module.define, REGISTRY_TRIALS)
    from_registry = run_define(SEARCH_SPACES[name].define(size), REGISTRY_TRIALS)
    assert [(trial.params, constants) for trial, constants in from_registry] == [
        (trial.params, constants) for trial, constants in from_module
    ]
    for trial, constants in from_module:
        assert set(trial.params) == expected_keys(name, trial.params)
        assert constants == EXPECTED_CONSTANTS[name]


def test_cutout_blur_only_with_blur_fill() -> None:
    fills_seen = set()
    for trial, _ in run_define(cutout.define_for(16), 120):
        fill = trial.params["views.params.fill"]
        fills_seen.add(fill)
        assert ("views.params.blur" in trial.params) == (fill == "blur")
    assert fills_seen == {"zero", "blur", "none"}


def test_cutout_blur_bound_follows_the_drawn_hole() -> None:
    size = 16
    lows = set()
    for trial, _ in run_define(cutout.define_for(size), 80):
        if trial.params["views.params.fill"] != "blur":
            continue
        distribution = trial.distributions["views.params.blur"]
        hole = trial.params["views.params.hole"]
        assert distribution.low == max(cutout.BLUR_RANGE[0], cutout.min_blur(hole, size))
        assert distribution.high == cutout.BLUR_RANGE[1]
        assert cutout.blur_fits(hole, trial.params["views.params.blur"], size)
        lows.add(distribution.low)
    assert len(lows) > 1, "at 16 px the small holes need more than the searched minimum"


def test_cutout_define_rejects_views_too_small_for_any_blur() -> None:
    with pytest.raises(ConfigError) as error:
        cutout.define_for(8)
    assert error.value.field == "views.size"
    assert "at least 11 px" in str(error.value)
    cutout.define_for(11)


def test_margin_parameters_follow_the_mode() -> None:
    modes_seen = set()
    for trial, _ in run_define(margin.define, 120):
        mode = trial.params["margin.mode"]
        modes_seen.add(mode)
        assert ("margin.m" in trial.params) == (mode == "fixed")
        assert ("margin.k" in trial.params) == (mode == "distance")
    assert modes_seen == {"none", "fixed", "distance"}


@given(hole=st.floats(0.01, 0.99), size=st.integers(1, 512))
def test_min_blur_is_the_smallest_that_the_cutout_family_accepts(hole: float, size: int) -> None:
    smallest = cutout.min_blur(hole, size)
    if smallest > 1:
        with pytest.raises(ConfigError):
            make_views("cutout", size=size, hole=hole, fill="blur", blur=1.0)
        return
    make_views("cutout", size=size, hole=hole, fill="blur", blur=smallest)
    with pytest.raises(ConfigError):
        make_views("cutout", size=size, hole=hole, fill="blur", blur=math.nextafter(smallest, 0.0))


def test_min_blur_known_values() -> None:
    # the shortest side of a hole of aspect in (3/4, 4/3) is sqrt(hole * 3/4) of the view
    assert cutout.min_blur(0.1, 16) == pytest.approx(3 / (math.sqrt(0.075) * 16))
    assert cutout.min_blur(0.75, 16) == pytest.approx(3 / 12)
    assert cutout.min_blur(1 / 3, 12) == pytest.approx(0.5)
    assert cutout.min_blur(0.01, 16) > 1
