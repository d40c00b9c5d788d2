"""Partitioners: disjoint, covering, seeded; Dirichlet skew follows alpha."""

from __future__ import annotations

import numpy as np
import pytest

from fedsim.data import PARTITIONERS, describe_partitioners, partition
from fedsim.data.partition import dirichlet, iid, shards, size_skew
from fedsim.errors import DataError

# 10 classes x 200 samples, in a shuffled order.
LABELS = np.random.default_rng(123).permutation(np.repeat(np.arange(10), 200))

CASES = [
    ("iid", {}),
    ("dirichlet", {"alpha": 0.3, "min_size": 20}),
    ("shards", {"shards_per_client": 2}),
    ("size_skew", {"sigma": 1.5}),
]


@pytest.mark.parametrize(("name", "options"), CASES)
def test_partition_is_disjoint_sorted_and_covers_all(name, options):
    parts = partition(name, LABELS, 25, np.random.default_rng(0), **options)
    assert len(parts) == 25
    assert all(len(p) > 0 and np.all(np.diff(p) > 0) for p in parts)
    everything = np.concatenate(parts)
    assert len(everything) == len(LABELS)  # disjoint ...
    np.testing.assert_array_equal(np.sort(everything), np.arange(len(LABELS)))  # ... covering


@pytest.mark.parametrize(("name", "options"), CASES)
def test_partition_is_a_function_of_the_seed(name, options):
    def run(seed):
        return partition(name, LABELS, 25, np.random.default_rng(seed), **options)

    a, b, c = run(5), run(5), run(6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_iid_sizes_differ_by_at_most_one():
    sizes = [len(p) for p in iid(LABELS, 7, np.random.default_rng(0))]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == len(LABELS)


def test_dirichlet_respects_min_size():
    for seed in range(5):
        parts = dirichlet(LABELS, 20, alpha=0.1, min_size=10, rng=np.random.default_rng(seed))
        assert min(len(p) for p in parts) >= 10


def _label_skew(parts) -> float:
    """Mean total-variation distance between each client's label mix and the global one."""
    overall = np.bincount(LABELS, minlength=10) / len(LABELS)
    mixes = [np.bincount(LABELS[p], minlength=10) / len(p) for p in parts]
    return float(np.mean([0.5 * np.abs(m - overall).sum() for m in mixes]))


def test_small_alpha_is_more_skewed_than_large_alpha():
    rng = np.random.default_rng(0)
    skewed = _label_skew(dirichlet(LABELS, 20, alpha=0.1, min_size=5, rng=rng))
    near_iid = _label_skew(dirichlet(LABELS, 20, alpha=100.0, min_size=5, rng=rng))
    assert skewed > 0.5 > 0.15 > near_iid


def test_dirichlet_impossible_min_size_is_a_clear_error():
    with pytest.raises(ValueError, match="data.min_size"):
        dirichlet(LABELS, 20, alpha=0.5, min_size=101, rng=np.random.default_rng(0))
    # Possible in principle, never drawn: the bounded retry gives up with a message.
    with pytest.raises(ValueError, match="lower min_size or raise alpha"):
        dirichlet(LABELS, 100, alpha=0.01, min_size=19, rng=np.random.default_rng(0), max_tries=5)


def test_shards_give_each_client_few_labels():
    # 2000 samples, 20 clients x 2 shards of 50: shards never straddle a label.
    parts = shards(LABELS, 20, 2, np.random.default_rng(0))
    assert all(len(np.unique(LABELS[p])) <= 2 for p in parts)
    assert all(len(p) == 100 for p in parts)


def test_size_skew_spreads_sizes_with_sigma():
    flat = [len(p) for p in size_skew(LABELS, 10, 0.0, np.random.default_rng(0))]
    assert max(flat) - min(flat) <= 1
    skewed = [len(p) for p in size_skew(LABELS, 10, 2.0, np.random.default_rng(0), min_size=3)]
    assert min(skewed) >= 3 and max(skewed) > 3 * min(skewed) and sum(skewed) == len(LABELS)


def test_partition_registry_errors_name_the_setting():
    rng = np.random.default_rng(0)
    with pytest.raises(DataError, match="data.partition"):
        partition("pathological", LABELS, 10, rng)
    with pytest.raises(DataError, match="data.beta"):
        partition("dirichlet", LABELS, 10, rng, beta=0.5)
    with pytest.raises(DataError, match="data.alpha"):
        partition("dirichlet", LABELS, 10, rng, alpha=0.0)
    with pytest.raises(DataError, match="clients"):
        partition("iid", LABELS, 5000, rng)
    with pytest.raises(TypeError, match="rng"):
        iid(LABELS, 10, None)


def test_registry_lists_every_partitioner():
    assert [n for n, _ in describe_partitioners()] == list(PARTITIONERS)
    assert set(PARTITIONERS) == {"iid", "dirichlet", "shards", "size_skew", "natural"}
