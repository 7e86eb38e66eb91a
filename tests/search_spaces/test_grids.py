"""The paper's grids, seeds, and replaying grid points through enqueued Optuna trials."""

import optuna
import pytest
import torch

from search_spaces import (
    SEARCH_SPACES,
    cutout,
    exclusive,
    grid_define,
    grid_search_space,
    margin,
    overlap,
    patch,
    with_seeds,
)
from tests.search_spaces.helpers import assert_overrides_applied
from trainables.data import DATASETS
from trainables.recipes import recipe
from trainables.validation import ConfigError
from trainables.views import VIEW_FAMILIES


def sized(size: int):
    """A base configuration with views of ``size`` pixels, on which the grids are built."""
    return recipe("digits", **{"views.size": size})


NINE_STEPS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
HOLES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]


def test_overlap_grid() -> None:
    assert overlap.grid() == [
        {"views.family": "overlap", "views.params.overlap": value} for value in NINE_STEPS
    ]


def test_patch_grid() -> None:
    assert patch.grid() == [
        {"views.family": "patch", "views.params.patch": value} for value in NINE_STEPS
    ]


def test_exclusive_grid() -> None:
    assert exclusive.grid() == [
        {"views.family": "exclusive", "views.params.crop": 0.1, "views.params.gap": gap}
        for gap in (0.02, 0.04, 0.06, 0.08, 0.1)
    ]


def test_margin_grid() -> None:
    paper = [
        {"margin.mode": "none"},
        {"margin.mode": "fixed", "margin.m": 0.2},
        {"margin.mode": "distance", "margin.k": 1.0},
    ]
    assert margin.grid() == paper
    assert margin.grid(1.9) == [*paper, {"margin.mode": "distance", "margin.k": 1.9}]


@pytest.mark.parametrize(
    ("dataset", "size"), [("pattern-scenes", 32), ("digit-scenes", 32), ("cifar10", 32)]
)
def test_the_matched_distance_arm_has_the_fixed_margins_mean_size(dataset: str, size: int) -> None:
    """k = m / E[phi] from the study's own views: fresh pairs of them give a mean margin of m."""
    base = recipe("cifar", **{"data.dataset": dataset, "views.size": size})
    matched = margin.grid_for(base)[-1]
    assert matched["margin.mode"] == "distance" and matched["margin.k"] > 1.5
    height, width = DATASETS[dataset].image_size
    fresh = base.views.build().sample(20_000, height, width, torch.Generator().manual_seed(1))
    assert float((matched["margin.k"] * fresh.phi).mean()) == pytest.approx(
        margin.PAPER_FIXED_MARGIN, rel=0.01
    )
    paper_arm = margin.grid_for(base)[2]
    assert float((paper_arm["margin.k"] * fresh.phi).mean()) < 0.7 * margin.PAPER_FIXED_MARGIN, (
        "k=1 is the smaller margin"
    )


def test_the_matched_scale_follows_the_views() -> None:
    """Smaller crops lie further apart, so the same mean margin needs a smaller k."""
    large = recipe("cifar", **{"views.params": {"scale": [0.8, 1.0]}})
    small = recipe("cifar", **{"views.params": {"scale": [0.1, 0.3]}})
    assert margin.matched_distance_scale(small) < margin.matched_distance_scale(large)


def cutout_points(blur_holes: dict[float, list[float]]) -> list[dict]:
    """Per hole, the zero fill, then the blurs listed for it."""
    points = []
    for hole in HOLES:
        points.append(
            {"views.family": "cutout", "views.params.hole": hole, "views.params.fill": "zero"}
        )
        for blur in blur_holes[hole]:
            points.append(
                {
                    "views.family": "cutout",
                    "views.params.hole": hole,
                    "views.params.fill": "blur",
                    "views.params.blur": blur,
                }
            )
    return points


def blurs_from(half_from: float, whole_from: float) -> dict[float, list[float]]:
    """Blur 0.5 at holes from ``half_from``, blur 1.0 at holes from ``whole_from``."""
    return {
        hole: [blur for blur, low in ((0.5, half_from), (1.0, whole_from)) if hole >= low]
        for hole in HOLES
    }


@pytest.mark.parametrize(
    ("size", "blur_holes"),
    [
        # the shortest side of a hole is sqrt(hole * 3/4) * size; blur b fits when b * side >= 3 px
        (32, blurs_from(0.1, 0.1)),  # hole 0.1: 8.76 px
        (16, blurs_from(0.2, 0.1)),  # hole 0.1: 4.38 px, 0.2: 6.20 px
        (12, blurs_from(0.4, 0.1)),  # hole 0.3: 5.69 px, 0.4: 6.57 px
        (8, blurs_from(1.0, 0.2)),  # hole 0.1: 2.19 px, 0.2: 3.10 px, 0.7: 5.80 px
        (5, blurs_from(1.0, 0.5)),  # hole 0.4: 2.74 px, 0.5: 3.06 px
    ],
)
def test_cutout_grid_skips_blur_points_whose_kernel_does_not_fit(
    size: int, blur_holes: dict[float, list[float]]
) -> None:
    assert cutout.grid(size) == cutout_points(blur_holes)


def test_cutout_grid_blurs_are_a_parameter() -> None:
    points = cutout.grid(16, blurs=(0.75,))  # a 3 px kernel at 0.75 of hole 0.1's 4.38 px side
    assert [p["views.params.blur"] for p in points if p["views.params.fill"] == "blur"] == [
        0.75
    ] * 7


@pytest.mark.parametrize("size", [16, 32, 64])
@pytest.mark.parametrize("name", sorted(SEARCH_SPACES))
def test_grid_points_build_valid_configs_with_clean_decimals(name: str, size: int) -> None:
    base = recipe("digits", **{"views.size": size})
    points = SEARCH_SPACES[name].grid(base)
    assert points
    for point in points:
        assert_overrides_applied(base.replace(**point), point)
        for value in point.values():
            if isinstance(value, float):
                assert value == round(value, 4) and len(repr(value)) <= 6, value


def test_registry_names_and_families() -> None:
    assert set(SEARCH_SPACES) == {"overlap", "patch", "exclusive", "cutout", "margin"}
    for name, space in SEARCH_SPACES.items():
        assert space.name == name
        assert space.description
        points = space.grid(sized(32))
        if space.family == "margin":
            assert all(key.startswith("margin.") for point in points for key in point)
        else:
            assert space.family in VIEW_FAMILIES
            assert {point["views.family"] for point in points} == {space.family}


def test_grid_search_space_sorted_unique_values_per_key() -> None:
    assert grid_search_space(with_seeds(margin.grid(), [2, 0, 1])) == {
        "margin.mode": ["distance", "fixed", "none"],
        "seed": [0, 1, 2],
        "margin.m": [0.2],
        "margin.k": [1.0],
    }
    space = grid_search_space(cutout.grid(16))
    assert space["views.params.hole"] == HOLES
    assert space["views.params.fill"] == ["blur", "zero"]
    assert space["views.params.blur"] == [0.5, 1.0]


def test_with_seeds_every_point_and_seed_exactly_once_points_outer() -> None:
    points = overlap.grid()
    seeded = with_seeds(points, (0, 1, 2))
    assert len(seeded) == len(points) * 3
    assert seeded[:3] == [{**points[0], "seed": seed} for seed in (0, 1, 2)]
    pairs = [(point["views.params.overlap"], point["seed"]) for point in seeded]
    assert len(set(pairs)) == len(pairs)
    assert set(pairs) == {(value, seed) for value in NINE_STEPS for seed in (0, 1, 2)}
    assert all("seed" not in point for point in points)


@pytest.mark.parametrize("seeds", [(0, 0), (), (-1,), (1.5,)])
def test_with_seeds_rejects_bad_seeds(seeds: tuple) -> None:
    with pytest.raises(ConfigError):
        with_seeds(overlap.grid(), seeds)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("name", sorted(SEARCH_SPACES))
def test_enqueued_points_are_reproduced_exactly(name: str) -> None:
    points = with_seeds(SEARCH_SPACES[name].grid(sized(16)), (0, 1))
    define = grid_define(points)
    space = grid_search_space(points)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    for point in points:
        study.enqueue_trial(point)
    for point in points:
        trial = study.ask()
        assert define(trial) == {}
        assert trial.params == point
        for key, distribution in trial.distributions.items():
            assert list(distribution.choices) == space[key]
        study.tell(trial, 0.0)


def test_grid_define_without_enqueue_draws_grid_values() -> None:
    points = margin.grid()
    define = grid_define(points)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        define(trial)
        mode = trial.params["margin.mode"]
        assert mode in {"none", "fixed", "distance"}
        assert ("margin.m" in trial.params) == (mode == "fixed")
        assert ("margin.k" in trial.params) == (mode == "distance")
        study.tell(trial, 0.0)


def test_grid_define_rejects_points_its_keys_cannot_tell_apart() -> None:
    with pytest.raises(ConfigError) as error:
        grid_define([{"margin.mode": "fixed"}, {"margin.mode": "fixed", "margin.m": 0.2}])
    assert error.value.field == "points"
    with pytest.raises(ConfigError):
        grid_define([])
