"""Datasets: the embedded ones load with fixed splits, synthetic is seeded, torchvision
sources fail clearly when their files are missing."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from fedsim.data import DATASETS, Dataset, clear_dataset_cache, describe_datasets, load_dataset
from fedsim.data.mnist5k import load_mnist5k
from fedsim.errors import DataError


def test_mnist5k_loads_a_stratified_4000_1000_split():
    d = load_dataset("mnist5k")
    assert (d.num_train, d.num_test, d.num_classes) == (4000, 1000, 10)
    assert d.input_shape == (1, 28, 28) and d.x_train.shape == (4000, 1, 28, 28)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert np.bincount(d.y_train).tolist() == [400] * 10
    assert np.bincount(d.y_test).tolist() == [100] * 10
    # Normalized with MNIST's own mean/std: close to zero mean, unit std.
    assert abs(float(d.x_train.mean())) < 0.05 and abs(float(d.x_train.std()) - 1) < 0.05
    assert float(d.x_train.min()) == pytest.approx(-0.1307 / 0.3081, abs=1e-5)


def test_mnist5k_split_is_stable_and_ignores_the_run_seed():
    a = load_dataset("mnist5k", seed=1)
    assert load_dataset("mnist5k", seed=2) is a  # cached, and the split does not use the seed
    fresh = load_mnist5k()  # a second read of the csv, no cache
    np.testing.assert_array_equal(fresh.x_test, a.x_test)
    np.testing.assert_array_equal(fresh.y_train, a.y_train)
    # No digit in both splits.
    train_rows = {row.tobytes() for row in a.x_train}
    assert not any(row.tobytes() in train_rows for row in a.x_test)


def test_loaded_arrays_are_read_only():
    d = load_dataset("mnist5k")
    with pytest.raises(ValueError):
        d.x_train[0, 0, 0, 0] = 1.0


def test_digits_loads_all_1797_8x8_digits():
    d = load_dataset("digits")
    assert d.num_train + d.num_test == 1797
    assert 0.18 < d.num_test / 1797 < 0.22
    assert d.input_shape == (1, 8, 8) and d.x_test.shape[1:] == (1, 8, 8)
    assert d.num_classes == 10 and set(np.unique(d.y_test)) == set(range(10))


def test_synthetic_is_a_function_of_the_seed():
    opts = dict(shape=[32], classes=4, train_size=200, test_size=50, noise=0.5)
    a = load_dataset("synthetic", seed=7, **opts)
    clear_dataset_cache()
    b = load_dataset("synthetic", seed=7, **opts)
    c = load_dataset("synthetic", seed=8, **opts)
    assert a is not b
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)
    assert a.input_shape == (32,) and a.x_train.shape == (200, 32) and a.num_classes == 4


def test_synthetic_images_are_learnable():
    d = load_dataset("synthetic", seed=0, shape=[1, 8, 8], train_size=500, test_size=200)
    assert d.x_train.shape == (500, 1, 8, 8)
    flat_train, flat_test = d.x_train.reshape(500, -1), d.x_test.reshape(200, -1)
    centroids = np.stack([flat_train[d.y_train == c].mean(0) for c in range(10)])
    distances = ((flat_test[:, None, :] - centroids[None]) ** 2).sum(-1)
    assert (distances.argmin(1) == d.y_test).mean() > 0.9


def test_unknown_dataset_or_option_is_a_data_error():
    with pytest.raises(DataError, match="data.dataset"):
        load_dataset("imagenet")
    with pytest.raises(DataError, match="data.synthetic.colour"):
        load_dataset("synthetic", colour=3)
    with pytest.raises(DataError, match="mnist5k has no option"):
        load_dataset("mnist5k", shape=[3])
    with pytest.raises(DataError, match="noise"):
        load_dataset("synthetic", noise=-1.0)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_missing_torchvision_files_name_the_folder(tmp_path, name):
    with pytest.raises(DataError) as err:
        load_dataset(name, root=str(tmp_path), download=False)
    message = str(err.value)
    assert str(tmp_path) in message and "data.download = true" in message
    assert list(tmp_path.iterdir()) == []  # nothing was fetched


def test_torchvision_source_without_root_asks_for_data_root():
    with pytest.raises(DataError, match="data.root"):
        load_dataset("mnist", root=None)


def _write_idx(path, array: np.ndarray) -> None:
    # The IDX format: magic (0, 0, type 0x08 = ubyte, ndim), big-endian sizes, raw bytes.
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def test_mnist_reads_idx_files_from_root(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = {
        "train": rng.integers(0, 256, (12, 28, 28)),
        "t10k": rng.integers(0, 256, (5, 28, 28)),
    }
    labels = {"train": np.arange(12) % 10, "t10k": np.arange(5)}
    for split in ("train", "t10k"):
        _write_idx(raw / f"{split}-images-idx3-ubyte", images[split])
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels[split])
    d = load_dataset("mnist", root=str(tmp_path))
    assert (d.num_train, d.num_test, d.num_classes, d.input_shape) == (12, 5, 10, (1, 28, 28))
    np.testing.assert_array_equal(d.y_train, labels["train"])
    expected = (images["t10k"][:, None] / 255.0 - 0.1307) / 0.3081
    np.testing.assert_allclose(d.x_test, expected, atol=1e-5)


def test_registry_lists_every_dataset():
    names = [name for name, _ in describe_datasets()]
    assert names == list(DATASETS)
    assert {"mnist5k", "digits", "mnist", "fashion-mnist", "cifar10", "synthetic"} <= set(names)
    assert all(summary for _, summary in describe_datasets())


def test_dataset_rejects_mismatched_arrays():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError):
        Dataset("bad", x, np.zeros(2, np.int64), x, np.zeros(3, np.int64), 2, (4,))
