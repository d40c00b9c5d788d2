"""The dataset registry: a scenario names a dataset, ``load_dataset`` returns it (cached).

Besides the built-ins below, ``data.dataset`` may be an import path (``"mypkg.data:load"``)
or a name registered in the ``fedsim.datasets`` entry-point group (fedsim/plugins.py); such
a loader follows the same convention and returns a ``Dataset``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from fedsim.data.dataset import Dataset
from fedsim.data.digits import load_digits
from fedsim.data.files import load_csv, load_image_folder, load_npz
from fedsim.data.mnist5k import load_mnist5k
from fedsim.data.synthetic import load_synthetic
from fedsim.data.torchvision_sources import load_cifar10, load_fashion_mnist, load_mnist
from fedsim.errors import DataError, ScenarioError

# name -> loader. A loader takes keyword arguments only: ``root``/``download``/``seed`` when
# it uses them, plus its own options; the first docstring line is its ``fedsim list`` entry.
DATASETS: dict[str, Callable[..., Dataset]] = {
    "mnist5k": load_mnist5k,
    "digits": load_digits,
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "synthetic": load_synthetic,
    "npz": load_npz,
    "csv": load_csv,
    "image-folder": load_image_folder,
}

# given to a loader when its signature names them; ``options`` are the loader's own
_COMMON = ("root", "download", "seed", "path")


def load_dataset(
    name: str,
    *,
    root: str | None = None,
    download: bool = False,
    seed: int = 0,
    path: str | None = None,
    **options: Any,
) -> Dataset:
    """Load dataset ``name``; repeated calls with the same arguments return the same object.

    ``seed`` only matters to datasets generated from it (``synthetic``); the real datasets'
    train/test splits are fixed. ``path`` is the file or folder of the file datasets
    (``data.path``). ``options`` are the loader's own keyword arguments.
    """
    try:
        loader = get_dataset_loader(name)
    except ScenarioError as e:
        raise DataError(str(e)) from None
    params = inspect.signature(loader).parameters
    own = [p for p in params if p not in _COMMON]
    prefix = "data.synthetic" if name == "synthetic" else "data.options"
    for key in options:
        if key not in own:
            takes = f"its options are {', '.join(own)}" if own else "it takes no options"
            raise DataError(f"{prefix}.{key}: dataset {name} has no option {key!r}; {takes}")
    if path is not None and "path" not in params:
        raise DataError(f"data.path: dataset {name} reads no files (it takes no path)")
    common = {"root": root, "download": download, "seed": seed, "path": path}
    kwargs = {k: v for k, v in common.items() if k in params} | options
    return _load_cached(name, _freeze(kwargs))


def get_dataset_loader(name: str) -> Callable[..., Dataset]:
    """The loader ``data.dataset`` stands for: built-in, import path or entry point."""
    from fedsim.plugins import lookup_callable

    return lookup_callable(
        "dataset", name, DATASETS, "a dataset loader returning fedsim.data.Dataset"
    )


def clear_dataset_cache() -> None:
    """Drop every cached dataset (tests, or a long process switching datasets)."""
    _load_cached.cache_clear()


def describe_datasets() -> list[tuple[str, str]]:
    """(name, one-line description) for each registered dataset, for ``fedsim list``."""
    return [(name, _first_line(loader)) for name, loader in DATASETS.items()]


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, frozen_kwargs: tuple[tuple[str, Any], ...]) -> Dataset:
    try:
        data = get_dataset_loader(name)(**dict(frozen_kwargs))
    except (TypeError, ValueError) as err:
        raise DataError(f"data: bad options for dataset {name}: {err}") from err
    if not isinstance(data, Dataset):
        raise DataError(
            f"data.dataset: {name} returned {type(data).__name__}, not a fedsim.data.Dataset"
        )
    return data


def _freeze(value: Any) -> Any:
    """Lists and dicts (as TOML gives them) to tuples, so the arguments can key the cache."""
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _first_line(obj: Any) -> str:
    return (inspect.getdoc(obj) or "").strip().splitlines()[0] if obj.__doc__ else ""
