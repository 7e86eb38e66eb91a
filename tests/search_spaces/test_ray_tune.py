"""The spaces as Ray Tune's OptunaSearch consumes them: define-by-run plus points_to_evaluate."""

import pytest

from search_spaces import get_preset, with_training

optuna_search = pytest.importorskip("ray.tune.search.optuna")


def suggest_configs(searcher, count: int) -> list[dict]:
    configs = []
    for index in range(count):
        config = searcher.suggest(f"trial-{index}")
        searcher.on_trial_complete(f"trial-{index}", {"knn_accuracy": 0.5})
        configs.append(config)
    return configs


def test_grid_preset_points_come_back_as_flat_dotted_configs() -> None:
    preset = get_preset("fig4-cutout-bundled")
    points = preset.points()
    searcher = optuna_search.OptunaSearch(
        space=preset.define(),
        metric="knn_accuracy",
        mode="max",
        points_to_evaluate=points,
        seed=0,
    )
    configs = suggest_configs(searcher, len(points))
    assert configs == points
    base = preset.base_config()
    for config in configs:
        base.replace(**config)


def test_search_preset_with_training_merges_suggestions_and_constants() -> None:
    preset = get_preset("cutout-search-bundled")
    searcher = optuna_search.OptunaSearch(
        space=with_training(preset.define()), metric="knn_accuracy", mode="max", seed=0
    )
    base = preset.base_config()
    for config in suggest_configs(searcher, 12):
        assert config["views.family"] == "cutout" and config["seed"] == preset.seeds[0]
        assert {"views.params.hole", "optim.base_lr", "optim.weight_decay"} <= set(config)
        base.replace(**config)
