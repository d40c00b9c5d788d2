"""``digits``: scikit-learn's 1,797 8x8 handwritten digits (UCI optdigits test set; no network)."""

from __future__ import annotations

import numpy as np

from fedsim.data.dataset import Dataset, normalize, stratified_split

TEST_FRACTION = 0.2


def load_digits() -> Dataset:
    """1,797 8x8 digits from scikit-learn, split ~80/20 (stratified, fixed)."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    labels = bunch.target.astype(np.int64)
    # Pixels are counts 0..16 (4x4 blocks of a 32x32 bitmap); scale to [0, 1] first.
    x = (bunch.images / np.float32(16.0)).astype(np.float32).reshape(-1, 1, 8, 8)
    train, test = stratified_split(labels, TEST_FRACTION, seed=0)
    # Standardize with the training split's own statistics, so no test data leaks in.
    mean, std = float(x[train].mean()), float(x[train].std())
    x = normalize(x, (mean,), (std,))
    return Dataset("digits", x[train], labels[train], x[test], labels[test], 10, (1, 8, 8))
