"""Named studies: the paper's figures as grids, and Optuna TPE searches, on real or bundled data.

Every figure has a real-data preset (the paper's datasets and epochs, for a GPU cluster) and a
``-bundled`` variant on the offline bundled data that runs on a laptop in minutes. A preset's
base configuration is ``recipe(recipe, epochs=epochs, **overrides)``; a grid trial adds one
point of ``points()`` (grid point x seed) and a search trial adds what ``define()`` draws.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from search_spaces.base import SEARCH_SPACES, SearchSpace
from search_spaces.common import SEED, DefineFn, Point, WithConstants, decimal_steps
from search_spaces.cutout import HOLE
from search_spaces.grids import check_seeds, grid_define, select_points, with_seeds
from search_spaces.overlap import OVERLAP
from search_spaces.patch import PATCH
from trainables.config import TrainConfig
from trainables.recipes import RECIPES, recipe
from trainables.validation import ConfigError, check_choice, check_range

GRID = "grid"
SEARCH = "search"
MODES = (GRID, SEARCH)
OWN_FIELDS = {"epochs": "preset.epochs", SEED: "preset.seeds"}


@dataclass(frozen=True)
class Preset:
    """A study: a search space run as a grid (every point x every seed) or as a TPE search of
    ``num_samples`` trials (one seed), on ``recipe`` with dotted ``overrides`` for ``epochs``.

    ``figure`` names the paper figure a grid reproduces ("" for searches). ``grid_only`` keeps
    the points of the space's grid whose value at each dotted key is listed (a laptop-sized
    figure runs a subset of the paper's points; empty: all of them). A grid runs every
    point and seed to the last epoch (no early stopping unless the study asks for it, see
    ``StudyConfig.early_stopping``); a search stops poor trials early with ASHA.
    """

    name: str
    space: str
    mode: str
    recipe: str
    overrides: Mapping[str, Any]
    epochs: int
    seeds: tuple[int, ...]
    num_samples: int | None = None
    description: str = ""
    figure: str = ""
    grid_only: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("preset.space", self.space, SEARCH_SPACES)
        check_choice("preset.mode", self.mode, MODES)
        check_choice("preset.recipe", self.recipe, RECIPES)
        check_range("preset.epochs", self.epochs, 1, integer=True)
        for key, own_field in OWN_FIELDS.items():
            if key in self.overrides:
                raise ConfigError(
                    f"preset.overrides.{key}",
                    self.overrides[key],
                    f"no {key!r} here: it is set by {own_field}",
                )
        object.__setattr__(self, "overrides", MappingProxyType(dict(self.overrides)))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        object.__setattr__(
            self,
            "grid_only",
            MappingProxyType({key: tuple(values) for key, values in self.grid_only.items()}),
        )
        self._check_mode()
        self.base_config()
        self.points()

    def _check_mode(self) -> None:
        check_seeds(self.seeds, field="preset.seeds")
        if self.mode == GRID and self.num_samples is not None:
            raise ConfigError(
                "preset.num_samples",
                self.num_samples,
                "None for a grid (one trial per point and seed)",
            )
        if self.mode == SEARCH:
            if self.grid_only:
                raise ConfigError(
                    "preset.grid_only", dict(self.grid_only), "empty for a search (it has no grid)"
                )
            check_range("preset.num_samples", self.num_samples, 1, integer=True)
            if len(self.seeds) != 1:
                raise ConfigError("preset.seeds", self.seeds, "exactly one seed for a search")

    @property
    def search_space(self) -> SearchSpace:
        return SEARCH_SPACES[self.space]

    def base_config(self, **extra_overrides: Any) -> TrainConfig:
        """The recipe with the preset's epochs and overrides, then ``extra_overrides`` (dotted)."""
        return recipe(self.recipe, **{"epochs": self.epochs, **self.overrides, **extra_overrides})

    @property
    def size(self) -> int:
        """The view side in output pixels, which the cutout space depends on."""
        return self.base_config().views.size

    def points(self, base: TrainConfig | None = None) -> list[Point]:
        """Grid mode: every grid point once per seed (points outer); search mode: none.
        ``base`` replaces the preset's base configuration (a study's own overrides), on which
        the grid depends (cutout on the view size, the margin on the views and images)."""
        if self.mode == SEARCH:
            return []
        grid = self.search_space.grid(base or self.base_config())
        return with_seeds(select_points(grid, self.grid_only, field="preset.grid_only"), self.seeds)

    def define(self, base: TrainConfig | None = None) -> DefineFn:
        """The define-by-run of the study: over the enqueued grid points, or the space's own
        (with the preset's seed as a constant)."""
        base = base or self.base_config()
        if self.mode == GRID:
            return grid_define(self.points(base))
        return WithConstants(self.search_space.define(base.views.size), {SEED: self.seeds[0]})

    @property
    def num_trials(self) -> int:
        return self.num_samples if self.num_samples is not None else len(self.points())


PAPER_SEEDS = (0, 1, 2)
BUNDLED_SEEDS = (0, 1, 2)
BUNDLED_RECIPE = "patterns-quick"
SEARCH_SEEDS = (0,)
SEARCH_EPOCHS = 100
SEARCH_SAMPLES = 32
BUNDLED_SEARCH_SAMPLES = 16
EVERY_OTHER_STEP = decimal_steps(0.1, 0.9, 0.2)
PAIRED_HOLES = (0.3, 0.5)
"""The bundled figures' points, chosen by cost before any result: a figure's 3 seeds must run in
25 minutes on 2 cores, and a `patterns-quick` trial takes 130 to 180 s of a core (two run at
a time; the machine's speed varies by day), so a figure holds 15 to 20 trials. The 9-point grids
keep every other point, ends included. Fig. 4 runs 3 arms per hole (zero fill and both grid
blurs, 0.5 and 1.0), so it keeps 2 holes among those where every arm runs at 16 px (0.2 to 0.7):
0.3 and 0.5, every other hole clear of the range's ends, each a paired comparison of cutout with
each cutout-blur. The full grids on bundled data:
``study run --space overlap --grid --dataset patterns --seeds 0 1 2``."""

CIFAR10 = {"data.dataset": "cifar10"}
PATTERNS = {"data.dataset": "patterns"}
COCO_TO_CIFAR10 = {
    "data.dataset": "coco",
    "data.eval_dataset": "cifar10",
    "views.size": 64,
    "model.backbone": "resnet18",
}
"""Fig. 5's setting on the cifar recipe: COCO scenes cut to 32 px lose most objects, so views are
64 px, and the ImageNet-stem ResNet-18 (4x downsampling stem) keeps the cost near the CIFAR
recipe's; the CIFAR-10 kNN images are resized to the same 64 px."""
SCENES_TO_PATTERNS = {
    "data.dataset": "pattern-scenes",
    "data.eval_dataset": "patterns",
    "views.size": 32,
}
"""The bundled analogue of Fig. 5: 64 px pattern scenes, 32 px views (16 px views of a scene lose
its motifs), kNN on the patterned objects at 32 px."""


@dataclass(frozen=True)
class _Setting:
    recipe: str
    overrides: Mapping[str, Any]
    epochs: int
    seeds: tuple[int, ...]
    data: str
    grid_only: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)


def _figure(
    figure: str,
    name: str,
    space: str,
    what: str,
    real: _Setting,
    bundled: _Setting,
    views: Mapping[str, Any] | None = None,
) -> list[Preset]:
    """The figure on real data and on bundled data; ``views`` adds dotted overrides to both."""
    return [
        Preset(
            name=f"{name}{suffix}",
            space=space,
            mode=GRID,
            recipe=setting.recipe,
            overrides={**setting.overrides, **(views or {})},
            epochs=setting.epochs,
            seeds=setting.seeds,
            description=(
                f"{what}; {setting.data}, {setting.epochs} epochs, seeds {list(setting.seeds)}"
                + "".join(
                    f"; {key.rsplit('.', 1)[-1]} {list(values)} only"
                    for key, values in setting.grid_only.items()
                )
            ),
            figure=figure,
            grid_only=setting.grid_only,
        )
        for suffix, setting in (("", real), ("-bundled", bundled))
    ]


def _search(space: str, real: _Setting, bundled: _Setting) -> list[Preset]:
    return [
        Preset(
            name=f"{space}-search{suffix}",
            space=space,
            mode=SEARCH,
            recipe=setting.recipe,
            overrides=setting.overrides,
            epochs=setting.epochs,
            seeds=setting.seeds,
            num_samples=samples,
            description=(
                f"Optuna TPE over the {space} space; {setting.data}, {setting.epochs} epochs, "
                f"{samples} trials"
            ),
        )
        for suffix, setting, samples in (
            ("", real, SEARCH_SAMPLES),
            ("-bundled", bundled, BUNDLED_SEARCH_SAMPLES),
        )
    ]


def _cifar(epochs: int, seeds: tuple[int, ...] = PAPER_SEEDS) -> _Setting:
    return _Setting("cifar", CIFAR10, epochs, seeds, "CIFAR-10 (cifar recipe, 32 px)")


def _patterns(
    seeds: tuple[int, ...] = BUNDLED_SEEDS, grid_only: Mapping[str, tuple[Any, ...]] | None = None
) -> _Setting:
    epochs = RECIPES[BUNDLED_RECIPE]["epochs"]
    return _Setting(
        BUNDLED_RECIPE,
        PATTERNS,
        epochs,
        seeds,
        f"bundled patterns ({BUNDLED_RECIPE} recipe, 32 px)",
        grid_only or {},
    )


def _coco(epochs: int, seeds: tuple[int, ...] = PAPER_SEEDS) -> _Setting:
    return _Setting(
        "cifar",
        COCO_TO_CIFAR10,
        epochs,
        seeds,
        "COCO, kNN on CIFAR-10 (cifar recipe, 64 px views, ResNet-18)",
    )


def _scenes(seeds: tuple[int, ...] = BUNDLED_SEEDS) -> _Setting:
    epochs = RECIPES[BUNDLED_RECIPE]["epochs"]
    return _Setting(
        BUNDLED_RECIPE,
        SCENES_TO_PATTERNS,
        epochs,
        seeds,
        f"bundled pattern scenes, kNN on patterns ({BUNDLED_RECIPE} recipe, 32 px views)",
    )


FIXED_CROP_AREA = 0.5
FIXED_AREA_OVERLAPS = (0.2, 0.3, 0.4)
FIXED_AREA_VIEWS = {
    "views.family": "overlap",
    "views.params.overlap": FIXED_AREA_OVERLAPS[0],
    "views.params.crop_area": [FIXED_CROP_AREA, FIXED_CROP_AREA],
}
"""Fig. 2a with the zoom held still: both crops cover exactly half the image with an aspect ratio
in [3/4, 4/3], so only the overlap varies. Crops of half the image can share 0.142 to 0.5 of a
square image (:func:`~trainables.views.pairs.feasible_overlap_range`), which holds the paper's
points 0.2, 0.3 and 0.4 (at 0.5 both crops would be the same box)."""


def _only(setting: _Setting, grid_only: Mapping[str, tuple[Any, ...]]) -> _Setting:
    return dataclasses.replace(setting, grid_only=grid_only)


OTHER_DATASETS = "other datasets of the figure via base_config(**{'data.dataset': ...})"

_PRESETS: list[Preset] = [
    *_figure(
        "Fig. 2a",
        "fig2a-overlap",
        "overlap",
        "overlap augmentation at overlap 0.1..0.9 "
        f"(paper: STL10, CIFAR10/100 at 400 epochs; {OTHER_DATASETS})",
        _cifar(400),
        _patterns(grid_only={OVERLAP: EVERY_OTHER_STEP}),
    ),
    *_figure(
        "Fig. 2a",
        "fig2a-overlap-fixed-area",
        "overlap",
        f"overlap augmentation at overlap {list(FIXED_AREA_OVERLAPS)} with both crops of exactly "
        f"{FIXED_CROP_AREA} of the image, aspect ratio in [3/4, 4/3]: overlap apart from zoom",
        _only(_cifar(400), {OVERLAP: FIXED_AREA_OVERLAPS}),
        _patterns(grid_only={OVERLAP: FIXED_AREA_OVERLAPS}),
        views=FIXED_AREA_VIEWS,
    ),
    *_figure(
        "Fig. 2b",
        "fig2b-patch",
        "patch",
        "patch augmentation at patch 0.1..0.9 "
        f"(paper: STL10, CIFAR10/100 at 400 epochs; {OTHER_DATASETS})",
        _cifar(400),
        _patterns(grid_only={PATCH: EVERY_OTHER_STEP}),
    ),
    *_figure(
        "Fig. 3",
        "fig3-exclusive",
        "exclusive",
        "mutually exclusive crops by exclusive-region area "
        f"(paper: CIFAR10 and STL10 at 400 epochs; {OTHER_DATASETS})",
        _cifar(400),
        _patterns(),
    ),
    *_figure(
        "Fig. 4",
        "fig4-cutout",
        "cutout",
        "cutout vs cutout-blur per hole size, the blur's kernel spanning half or all of the hole's "
        "shorter side, blur points left out where the kernel does not fit the hole "
        "(paper: 100 epochs)",
        _cifar(100),
        _patterns(grid_only={HOLE: PAIRED_HOLES}),
    ),
    *_figure(
        "Fig. 5",
        "fig5-margin",
        "margin",
        "vanilla vs fixed margin 0.2 vs distance-based margin, trained scene-centric and evaluated "
        "object-centric (the paper does not state Fig. 5's epochs: 100 here)",
        _coco(100),
        _scenes(),
    ),
    *_search("overlap", _cifar(SEARCH_EPOCHS, SEARCH_SEEDS), _patterns(seeds=SEARCH_SEEDS)),
    *_search("patch", _cifar(SEARCH_EPOCHS, SEARCH_SEEDS), _patterns(seeds=SEARCH_SEEDS)),
    *_search("exclusive", _cifar(SEARCH_EPOCHS, SEARCH_SEEDS), _patterns(seeds=SEARCH_SEEDS)),
    *_search("cutout", _cifar(SEARCH_EPOCHS, SEARCH_SEEDS), _patterns(seeds=SEARCH_SEEDS)),
    *_search("margin", _coco(SEARCH_EPOCHS, SEARCH_SEEDS), _scenes(seeds=SEARCH_SEEDS)),
]

PRESETS: dict[str, Preset] = {preset.name: preset for preset in _PRESETS}


def get_preset(name: str) -> Preset:
    return PRESETS[check_choice("preset", name, PRESETS)]
