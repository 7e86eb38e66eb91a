"""Search spaces of the spatial-augmentation study, as dotted TrainConfig overrides.

``SEARCH_SPACES`` holds one :class:`SearchSpace` per family (overlap, patch, exclusive, cutout)
and the loss margin, each with a define-by-run for Optuna / Ray Tune and the paper's grid.
``PRESETS`` names complete studies: the paper's figures and TPE searches.
"""

from search_spaces.base import SEARCH_SPACES, SearchSpace, get_space
from search_spaces.common import DefineFn, Point
from search_spaces.grids import check_seeds, grid_define, grid_search_space, with_seeds
from search_spaces.presets import PRESETS, Preset, get_preset
from search_spaces.training import with_training

__all__ = [
    "PRESETS",
    "SEARCH_SPACES",
    "DefineFn",
    "Point",
    "Preset",
    "SearchSpace",
    "check_seeds",
    "get_preset",
    "get_space",
    "grid_define",
    "grid_search_space",
    "with_seeds",
    "with_training",
]
