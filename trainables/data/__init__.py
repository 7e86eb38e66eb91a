"""Datasets for the study: one registry, one entry point, uint8 ``[3, H, W]`` images.

>>> ds = get_dataset("digits", split="test")
>>> image, label = ds[0]
"""

from trainables.data.registry import DATASETS, DatasetInfo, default_data_root, get_dataset

__all__ = ["DATASETS", "DatasetInfo", "default_data_root", "get_dataset"]
