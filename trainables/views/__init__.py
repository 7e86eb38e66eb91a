"""Spatial view samplers: overlap, patch, mutually exclusive crops, cutout and the baseline."""

from trainables.views.families import (
    VIEW_FAMILIES,
    Cutout,
    Exclusive,
    Overlap,
    Patch,
    RandomCrop,
    ViewSampler,
    make_views,
)
from trainables.views.geometry import ViewGeometry

__all__ = [
    "VIEW_FAMILIES",
    "Cutout",
    "Exclusive",
    "Overlap",
    "Patch",
    "RandomCrop",
    "ViewGeometry",
    "ViewSampler",
    "make_views",
]
