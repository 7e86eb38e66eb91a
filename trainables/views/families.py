"""The view families of the study, registered in :data:`VIEW_FAMILIES` when this module loads.

Each separates its geometry (``sample``) from rendering; see :mod:`trainables.views.sampler`.
"""

from trainables.views.crops import CROP_DISTRIBUTIONS, Exclusive, Overlap, Patch, RandomCrop
from trainables.views.cutout import FILLS, Cutout
from trainables.views.sampler import RATIO, VIEW_FAMILIES, ViewSampler, make_views

__all__ = [
    "CROP_DISTRIBUTIONS",
    "FILLS",
    "RATIO",
    "VIEW_FAMILIES",
    "Cutout",
    "Exclusive",
    "Overlap",
    "Patch",
    "RandomCrop",
    "ViewSampler",
    "make_views",
]
