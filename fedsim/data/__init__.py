"""Datasets and partitioners: ``load_dataset(name, ...)`` and ``partition(name, labels, ...)``.

Registries (name -> callable) so a scenario file names them and ``fedsim list`` prints them.
"""

from fedsim.data.dataset import Dataset
from fedsim.data.partition import PARTITIONERS, describe_partitioners, partition
from fedsim.data.registry import DATASETS, clear_dataset_cache, describe_datasets, load_dataset

__all__ = [
    "DATASETS",
    "PARTITIONERS",
    "Dataset",
    "clear_dataset_cache",
    "describe_datasets",
    "describe_partitioners",
    "load_dataset",
    "partition",
]
