"""``mnist``, ``fashion-mnist``, ``cifar10``: torchvision's files from a local root, read once
into numpy. Nothing is fetched unless the scenario says ``data.download = true``."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from fedsim.data.dataset import Dataset, normalize
from fedsim.errors import DataError

_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@dataclass(frozen=True)
class TorchvisionSource:
    """Which torchvision class reads a dataset, where it looks, and the normalization."""

    name: str
    torchvision_class: str
    folder: str  # below root, where torchvision expects the files
    files: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_shape: tuple[int, ...]


# Means and stds of each training set on [0, 1] pixels (computed over all training images;
# CIFAR-10's std is the per-pixel one, not the often-copied 0.2023/0.1994/0.2010).
SOURCES = {
    "mnist": TorchvisionSource(
        "mnist", "MNIST", "MNIST/raw", _IDX_FILES, (0.1307,), (0.3081,), (1, 28, 28)
    ),
    "fashion-mnist": TorchvisionSource(
        "fashion-mnist",
        "FashionMNIST",
        "FashionMNIST/raw",
        _IDX_FILES,
        (0.2860,),
        (0.3530,),
        (1, 28, 28),
    ),
    "cifar10": TorchvisionSource(
        "cifar10",
        "CIFAR10",
        "cifar-10-batches-py",
        ("data_batch_1", "...", "data_batch_5", "test_batch", "batches.meta"),
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        (3, 32, 32),
    ),
}


def load_torchvision(name: str, root: str | None, download: bool) -> Dataset:
    """Read one of SOURCES from ``root`` (downloading into it only when ``download``)."""
    source = SOURCES[name]
    if not root:
        raise DataError(
            f"data.root: not set; data.dataset = {name} reads torchvision files from a local "
            "folder (set data.root, and data.download = true to fetch them)"
        )
    import torchvision.datasets

    cls = getattr(torchvision.datasets, source.torchvision_class)
    where = os.path.join(os.path.abspath(os.path.expanduser(root)), source.folder)
    try:
        train = cls(root, train=True, download=download)
        test = cls(root, train=False, download=False)
    except (RuntimeError, OSError) as err:
        if download:
            raise DataError(f"data.download: could not fetch {name} into {where}: {err}") from err
        raise DataError(
            f"data.root: {where} has no {name} files; put {', '.join(source.files)} there "
            "or set data.download = true"
        ) from err
    x_train, y_train = _to_numpy(train, source)
    x_test, y_test = _to_numpy(test, source)
    return Dataset(name, x_train, y_train, x_test, y_test, len(train.classes), source.input_shape)


def _to_numpy(split, source: TorchvisionSource) -> tuple[np.ndarray, np.ndarray]:
    data = np.asarray(split.data)  # MNIST: uint8 tensor (N, H, W); CIFAR: uint8 (N, H, W, C)
    data = data[:, None] if data.ndim == 3 else data.transpose(0, 3, 1, 2)
    # (p / 255 - mean) / std in one float32 pass over the uint8 pixels.
    x = normalize(data, tuple(255 * m for m in source.mean), tuple(255 * s for s in source.std))
    return x, np.asarray(split.targets, dtype=np.int64)


def load_mnist(*, root: str | None = None, download: bool = False) -> Dataset:
    """torchvision MNIST (60k/10k, 1x28x28) from data.root."""
    return load_torchvision("mnist", root, download)


def load_fashion_mnist(*, root: str | None = None, download: bool = False) -> Dataset:
    """torchvision Fashion-MNIST (60k/10k, 1x28x28) from data.root."""
    return load_torchvision("fashion-mnist", root, download)


def load_cifar10(*, root: str | None = None, download: bool = False) -> Dataset:
    """torchvision CIFAR-10 (50k/10k, 3x32x32) from data.root."""
    return load_torchvision("cifar10", root, download)
