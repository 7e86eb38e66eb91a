import dataclasses

import pytest
import yaml

from trainables.config import TrainConfig
from trainables.data import DATASETS
from trainables.recipes import RECIPES, recipe
from trainables.validation import ConfigError


def test_round_trips_through_plain_data_and_yaml():
    config = TrainConfig.from_dict(
        {
            "data": {"dataset": "digit-scenes"},
            "views": {"family": "cutout", "params": {"hole": 0.3, "fill": "blur"}, "size": 48},
            "margin": {"mode": "distance", "k": 0.5},
            "photometric": {"blur_sigma": [0.2, 1.0]},
            "epochs": 3,
        }
    )
    assert config.data.eval_dataset == "digits"
    assert config.photometric.blur_sigma == (0.2, 1.0)
    assert TrainConfig.from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict()))) == config


@pytest.mark.parametrize(
    ("data", "field", "valid"),
    [
        ({"epochs": 0}, "epochs=0", "[1, inf)"),
        ({"margin": {"k": -1.0}}, "margin.k=-1.0", "[0, inf)"),
        ({"margin": {"mode": "hinge"}}, "margin.mode='hinge'", "'distance'"),
        (
            {"views": {"family": "overlap", "params": {"overlap": 1.2}}},
            "overlap.overlap=1.2",
            "(0, 1)",
        ),
        ({"views": {"famly": "overlap"}}, "views.famly", "family"),
        ({"data": {"dataset": "mnist"}}, "data.dataset='mnist'", "'cifar10'"),
        (
            {"data": {"dataset": "coco", "eval_dataset": "coco"}},
            "data.eval_dataset='coco'",
            "'cifar10'",
        ),
        (
            {"data": {"dataset": "stl10", "train_split": "extra"}},
            "data.train_split='extra'",
            "'unlabeled'",
        ),
        ({"optim": {"base_lr": 0}}, "optim.base_lr=0", "(0, inf)"),
        ({"optim": {"warmup_epochs": -1}}, "optim.warmup_epochs=-1", "[0, inf)"),
        ({"optim": {"warmup_epochs": 5}, "epochs": 5}, "optim.warmup_epochs=5", "[0, 4]"),
        ({"batch_size": 1.5}, "batch_size=1.5", "an integer"),
        ({"model": "small"}, "model='small'", "a mapping"),
    ],
)
def test_invalid_fields_are_named_with_value_and_valid_range(data, field, valid):
    with pytest.raises(ConfigError) as error:
        TrainConfig.from_dict(data)
    assert field in str(error.value) and valid in str(error.value)


def test_scene_datasets_default_to_an_object_centric_evaluation():
    assert TrainConfig.from_dict({"data": {"dataset": "coco"}}).data.eval_dataset == "cifar10"
    assert (
        TrainConfig.from_dict(
            {"data": {"dataset": "stl10", "train_split": "unlabeled"}}
        ).data.eval_dataset
        == "stl10"
    )


def test_replace_takes_dotted_paths_and_revalidates():
    config = TrainConfig().replace(
        **{"views.family": "patch", "views.params.patch": 0.4, "epochs": 7}
    )
    assert config.views.build().patch == 0.4 and config.epochs == 7
    with pytest.raises(ConfigError, match="patch.patch"):
        config.replace(**{"views.params.patch": 0.0})


def test_config_is_frozen_and_lr_scales_with_batch():
    config = TrainConfig(batch_size=512)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3
    assert config.lr == pytest.approx(0.06)


def test_knn_k_defaults_to_200_capped_by_the_smallest_class_of_the_bank() -> None:
    assert TrainConfig.from_dict({"data": {"dataset": "cifar10"}}).knn.k == 200
    assert (
        TrainConfig.from_dict({"data": {"dataset": "digits"}}).knn.k
        == DATASETS["digits"].smallest_class
        == 131
    )
    assert TrainConfig.from_dict({"data": {"dataset": "digits"}, "knn": {"k": 20}}).knn.k == 20


def test_a_knn_k_above_the_smallest_class_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict({"data": {"dataset": "digit-scenes"}, "knn": {"k": 132}})
    assert (
        caught.value.field == "knn.k"
        and "132" in str(caught.value)
        and "1..131" in str(caught.value)
    )
    assert (
        TrainConfig.from_dict({"data": {"dataset": "digit-scenes"}, "knn": {"k": 131}}).knn.k == 131
    )


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_no_recipe_uses_a_k_above_its_banks_smallest_class(name: str) -> None:
    config = recipe(name)
    smallest = DATASETS[config.data.eval_dataset].smallest_class
    assert smallest is not None and config.knn.k <= smallest


def test_recipes_crop_as_torchvision_but_the_bundled_ones_keep_area_first():
    from trainables.recipes import RECIPES, recipe

    for name in RECIPES:
        expected = (
            "area_first" if name in ("digits", "patterns", "patterns-quick") else "torchvision"
        )
        assert recipe(name).views.build().distribution == expected, name


def test_a_new_view_family_starts_without_the_old_familys_params():
    from trainables.recipes import recipe

    switched = recipe("patterns-quick", **{"views.params.overlap": 0.3, "views.family": "overlap"})
    assert (switched.views.family, switched.views.params) == ("overlap", {"overlap": 0.3})
    again = switched.replace(**{"views.family": "overlap", "views.params.crop_area": [0.5, 0.5]})
    assert again.views.params == {"overlap": 0.3, "crop_area": [0.5, 0.5]}, (
        "the same family keeps its params"
    )
    back = switched.replace(**{"views.family": "random_crop"})
    assert back.views.params == {} and back.views.build().distribution == "torchvision"
