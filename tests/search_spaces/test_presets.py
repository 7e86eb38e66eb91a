"""Presets: every point of every preset builds a valid config; the figures' settings."""

from types import MappingProxyType

import optuna
import pytest

from search_spaces import PRESETS, SEARCH_SPACES, Preset, get_preset, get_space, margin, with_seeds
from search_spaces.grids import select_points
from tests.search_spaces.helpers import assert_overrides_applied, run_define
from trainables.config import TrainConfig
from trainables.validation import ConfigError

FIGURES = (
    "fig2a-overlap",
    "fig2a-overlap-fixed-area",
    "fig2b-patch",
    "fig3-exclusive",
    "fig4-cutout",
    "fig5-margin",
)
SEARCHES = tuple(
    f"{space}-search" for space in ("overlap", "patch", "exclusive", "cutout", "margin")
)


FEASIBLE_SUBSETS = {"fig2a-overlap-fixed-area": {"views.params.overlap": (0.2, 0.3, 0.4)}}
"""Real-data grids that keep only the paper's points their views can realise."""


@pytest.mark.parametrize("name", ["fig2a-overlap-fixed-area", "fig2a-overlap-fixed-area-bundled"])
def test_the_fixed_area_figure_varies_the_overlap_alone(name: str) -> None:
    preset = get_preset(name)
    assert dict(preset.grid_only) == FEASIBLE_SUBSETS["fig2a-overlap-fixed-area"]
    for point in preset.points():
        sampler = preset.base_config(**point).views.build()
        assert sampler.crop_area == (0.5, 0.5) and sampler.overlap == point["views.params.overlap"]
    with pytest.raises(
        ConfigError, match=r"overlap\.overlap=0\.5 .*\(0\.1423, 0\.5000\).* square image"
    ):
        preset.base_config(**{"views.params.overlap": 0.5})


def test_every_figure_and_search_has_a_real_and_a_bundled_preset() -> None:
    expected = {name + suffix for name in FIGURES + SEARCHES for suffix in ("", "-bundled")}
    assert set(PRESETS) == expected
    for name, preset in PRESETS.items():
        assert preset.name == name and preset.description
        assert (preset.recipe == "patterns-quick") == name.endswith("-bundled")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_point_builds_a_valid_config(name: str) -> None:
    preset = PRESETS[name]
    base = preset.base_config()
    assert isinstance(base, TrainConfig) and base.epochs == preset.epochs
    assert_overrides_applied(base, dict(preset.overrides))
    for point in preset.points():
        assert_overrides_applied(base.replace(**point), point)
        assert_overrides_applied(preset.base_config(**point), point)


@pytest.mark.parametrize("name", sorted(n for n, p in PRESETS.items() if p.mode == "grid"))
def test_grid_presets_are_the_space_grid_times_the_seeds(name: str) -> None:
    preset = PRESETS[name]
    assert preset.num_samples is None and preset.figure.startswith("Fig. ")
    points = preset.points()
    grid = SEARCH_SPACES[preset.space].grid(preset.base_config())
    assert points == with_seeds(select_points(grid, preset.grid_only), preset.seeds)
    assert preset.num_trials == len(points)
    if not name.endswith("-bundled") and name not in FEASIBLE_SUBSETS:
        assert not preset.grid_only and len(points) == len(grid) * len(preset.seeds)


def test_bundled_figures_run_every_other_paper_point_within_a_laptop_budget() -> None:
    overlaps = sorted(
        {p["views.params.overlap"] for p in get_preset("fig2a-overlap-bundled").points()}
    )
    assert overlaps == [0.1, 0.3, 0.5, 0.7, 0.9]
    patches = sorted({p["views.params.patch"] for p in get_preset("fig2b-patch-bundled").points()})
    assert patches == [0.1, 0.3, 0.5, 0.7, 0.9]
    for name in FIGURES:
        bundled = get_preset(f"{name}-bundled")
        assert bundled.num_trials <= 20, name
        assert bundled.description.endswith(" only") == bool(bundled.grid_only)


@pytest.mark.parametrize("name", sorted(n for n, p in PRESETS.items() if p.mode == "grid"))
def test_grid_preset_define_replays_every_point(name: str) -> None:
    preset = PRESETS[name]
    define = preset.define()
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    for point in preset.points():
        study.enqueue_trial(point)
        trial = study.ask()
        assert define(trial) == {} and trial.params == point
        study.tell(trial, 0.0)


@pytest.mark.parametrize("name", sorted(n for n, p in PRESETS.items() if p.mode == "search"))
def test_search_presets_sample_valid_configs_with_their_seed(name: str) -> None:
    preset = PRESETS[name]
    assert preset.points() == [] and preset.num_trials == preset.num_samples >= 1
    assert preset.figure == "" and len(preset.seeds) == 1
    base = preset.base_config()
    for trial, constants in run_define(preset.define(), 15):
        assert constants["seed"] == preset.seeds[0]
        overrides = {**trial.params, **constants}
        assert_overrides_applied(base.replace(**overrides), overrides)


def test_figure_settings() -> None:
    overlap = get_preset("fig2a-overlap")
    assert (overlap.space, overlap.mode, overlap.recipe, overlap.epochs, overlap.seeds) == (
        "overlap",
        "grid",
        "cifar",
        400,
        (0, 1, 2),
    )
    assert overlap.base_config().data.dataset == "cifar10"
    assert len(overlap.points()) == 9 * 3
    bundled = get_preset("fig2a-overlap-bundled")
    assert (bundled.recipe, bundled.base_config().data.dataset, bundled.seeds) == (
        "patterns-quick",
        "patterns",
        (0, 1, 2),
    )
    assert bundled.epochs == bundled.base_config().epochs <= 10
    assert get_preset("fig2b-patch").space == "patch"
    assert {get_preset("fig3-exclusive").epochs, get_preset("fig4-cutout").epochs} == {400, 100}


def test_cutout_presets_leave_out_the_blur_that_does_not_fit_their_views() -> None:
    real, bundled = get_preset("fig4-cutout"), get_preset("fig4-cutout-bundled")
    assert (real.size, bundled.size) == (32, 16)
    assert len(real.points()) == 7 * 3 * 3, "every hole: zero fill and both blurs, 3 seeds"
    full_grid = SEARCH_SPACES["cutout"].grid(bundled.base_config())
    half_blur = {p["views.params.hole"] for p in full_grid if p.get("views.params.blur") == 0.5}
    assert half_blur == {0.2, 0.3, 0.4, 0.5, 0.6, 0.7}
    # the bundled figure keeps only holes where every arm runs: every comparison is paired
    arms = {}
    for point in bundled.points():
        arms.setdefault(point["views.params.hole"], set()).add(
            (point["views.params.fill"], point.get("views.params.blur"))
        )
    assert arms == {hole: {("zero", None), ("blur", 0.5), ("blur", 1.0)} for hole in (0.3, 0.5)}
    assert bundled.num_trials == 18


def test_margin_presets_train_scene_centric_and_evaluate_object_centric() -> None:
    real = get_preset("fig5-margin").base_config()
    assert (real.data.dataset, real.data.eval_dataset, real.views.family) == (
        "coco",
        "cifar10",
        "random_crop",
    )
    bundled = get_preset("fig5-margin-bundled").base_config()
    assert (bundled.data.dataset, bundled.data.eval_dataset, bundled.views.size) == (
        "pattern-scenes",
        "patterns",
        32,
    )
    for name in ("fig5-margin", "fig5-margin-bundled"):
        preset = get_preset(name)
        points = preset.points()
        assert [p["margin.mode"] for p in points] == ["none"] * 3 + ["fixed"] * 3 + ["distance"] * 6
        scales = sorted({p["margin.k"] for p in points if p["margin.mode"] == "distance"})
        assert scales == [1.0, margin.matched_distance_scale(preset.base_config())], (
            "the paper's k and the matched one"
        )
        assert 1.5 < scales[1] < 2.5


def test_unknown_names_raise_config_errors() -> None:
    with pytest.raises(ConfigError) as error:
        get_preset("fig9-nothing")
    assert error.value.field == "preset" and "fig2a-overlap" in error.value.valid
    with pytest.raises(ConfigError) as error:
        get_space("rotation")
    assert error.value.field == "search_space"


def make(**changes: object) -> Preset:
    fields = {
        "name": "custom",
        "space": "overlap",
        "mode": "grid",
        "recipe": "digits",
        "overrides": {"data.dataset": "digits"},
        "epochs": 2,
        "seeds": (0,),
    }
    return Preset(**{**fields, **changes})


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"mode": "random"}, "preset.mode"),
        ({"space": "rotation"}, "preset.space"),
        ({"recipe": "mnist"}, "preset.recipe"),
        ({"epochs": 0}, "preset.epochs"),
        ({"seeds": ()}, "preset.seeds"),
        ({"seeds": (1, 1)}, "preset.seeds"),
        ({"num_samples": 4}, "preset.num_samples"),
        ({"mode": "search"}, "preset.num_samples"),
        ({"mode": "search", "num_samples": 4, "seeds": (0, 1)}, "preset.seeds"),
        ({"overrides": {"epochs": 3}}, "preset.overrides.epochs"),
        ({"overrides": {"seed": 3}}, "preset.overrides.seed"),
        ({"overrides": {"data.dataset": "mnist"}}, "data.dataset"),
        ({"grid_only": {"views.params.overlap": (0.35,)}}, "preset.grid_only.views.params.overlap"),
        ({"grid_only": {"views.params.patch": (0.3,)}}, "preset.grid_only"),
        (
            {"mode": "search", "num_samples": 4, "grid_only": {"views.params.overlap": (0.3,)}},
            "preset.grid_only",
        ),
    ],
)
def test_invalid_presets_are_rejected_naming_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError) as error:
        make(**changes)
    assert error.value.field == field


def test_preset_overrides_are_read_only_and_extra_overrides_apply() -> None:
    preset = make()
    assert isinstance(preset.overrides, MappingProxyType)
    with pytest.raises(TypeError):
        preset.overrides["epochs"] = 5  # type: ignore[index]
    assert preset.base_config(batch_size=8).batch_size == 8
