"""``synthetic``: seeded class prototypes plus Gaussian noise, any shape, for scale and speed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedsim.data.dataset import Dataset
from fedsim.errors import DataError


def load_synthetic(
    *,
    seed: int = 0,
    shape: Sequence[int] = (1, 28, 28),
    classes: int = 10,
    train_size: int = 4000,
    test_size: int = 1000,
    noise: float = 1.0,
) -> Dataset:
    """Seeded Gaussian class prototypes + noise; options: shape, classes, train/test_size, noise.

    Each class c has a prototype mu_c ~ N(0, I); a sample is (mu_c + noise * eps) / sqrt(1 +
    noise^2), eps ~ N(0, I), so every feature has unit variance. Classes are balanced
    (round-robin, then shuffled). Learnable: a linear model separates the prototypes.
    """
    shape = tuple(int(s) for s in shape)
    if not shape or min(shape) < 1:
        raise DataError(
            f"data.synthetic.shape: {list(shape)} must be a non-empty list of positive sizes"
        )
    if classes < 2:
        raise DataError(f"data.synthetic.classes: {classes} must be at least 2")
    if train_size < 1 or test_size < 1:
        raise DataError("data.synthetic.train_size and test_size must be at least 1")
    if noise < 0:
        raise DataError(f"data.synthetic.noise: {noise} must be >= 0")
    rng = np.random.default_rng(seed)
    dim = int(np.prod(shape))
    prototypes = rng.standard_normal((classes, dim), dtype=np.float32)
    scale = np.float32(1.0 / np.sqrt(1.0 + noise**2))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.arange(n) % classes).astype(np.int64)
        x = rng.standard_normal((n, dim), dtype=np.float32)
        # in place, in slices: the same values as (prototypes[y] + noise * x) * scale without
        # two more n x dim temporaries (a 100,000-client population holds 200,000 samples)
        for s in range(0, n, 8192):
            part = x[s : s + 8192]
            part *= np.float32(noise)
            part += prototypes[y[s : s + 8192]]
            part *= scale
        return x.reshape((n, *shape)), y

    x_train, y_train = draw(train_size)
    x_test, y_test = draw(test_size)
    return Dataset("synthetic", x_train, y_train, x_test, y_test, classes, shape)
