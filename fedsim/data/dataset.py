"""The in-memory dataset every loader returns, and the small array steps loaders share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """A labelled train/test pair held as numpy arrays, ready to feed a model.

    ``x_*`` are float32 and already normalized, shaped ``(N, *input_shape)`` (``C, H, W``
    for images, ``D`` for vectors); ``y_*`` are int64 class indices in ``[0, num_classes)``.
    The arrays are read-only: loaded datasets are cached and shared within a process.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    input_shape: tuple[int, ...]
    groups: np.ndarray | None = None  # client id of each training sample (partition = natural)

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != np.float32 or y.dtype != np.int64:
                raise TypeError(f"{self.name}: x_{split} must be float32 and y_{split} int64")
            if x.shape[1:] != tuple(self.input_shape) or len(x) != len(y):
                raise ValueError(f"{self.name}: x_{split} {x.shape} does not match labels/shape")
            x.flags.writeable = False
            y.flags.writeable = False
        if self.groups is not None:
            if self.groups.shape != self.y_train.shape:
                raise ValueError(f"{self.name}: groups must hold one client id per training sample")
            self.groups.flags.writeable = False

    @property
    def num_train(self) -> int:
        return len(self.y_train)

    @property
    def num_test(self) -> int:
        return len(self.y_test)


def stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) index arrays taking ``round(test_fraction * n_c)`` of each class.

    The seed is the split's own, not the run's, so a dataset's split never moves.
    """
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        test.append(members[: round(test_fraction * len(members))])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx, test_idx


def normalize(x: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """``(x - mean) / std`` per channel (axis 1) as float32; one value applies to all channels."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    out = x.astype(np.float32)  # a fresh copy, then in place: CIFAR-10 is 600 MB as float32
    out -= np.asarray(mean, dtype=np.float32).reshape(shape)
    out /= np.asarray(std, dtype=np.float32).reshape(shape)
    return out
