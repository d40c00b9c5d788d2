import numpy as np
import pytest
from fedsim.codecs.pipeline import parse_codec
from fedsim.codecs.sparsify import k_for, randk_indices, topk_indices
from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 400_000), st.floats(1e-4, 1.0), st.integers(0, 2**31), st.booleans())
def test_topk_keeps_exactly_the_k_largest(n, frac, seed, ties):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n).astype(np.float32)
    if ties:
        x = np.round(x * 4) / 4
    k = k_for(n, frac)
    idx = topk_indices(x, k)
    assert idx.size == k and np.all(np.diff(idx) > 0)
    kept = np.zeros(n, bool)
    kept[idx] = True
    if 0 < k < n:
        assert np.abs(x[kept]).min() >= np.abs(x[~kept]).max()


def test_topk_large_uses_sampling_path_and_is_exact():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1_000_000).astype(np.float32)
    x[:1000] = 0  # many ties at zero do not matter
    idx = topk_indices(x, 10_000)
    ref = np.sort(np.argsort(-np.abs(x), kind="stable")[:10_000])
    np.testing.assert_array_equal(np.sort(np.abs(x[idx])), np.sort(np.abs(x[ref])))
    # adversarial: constant array (threshold sampling cannot help), still exact k
    assert topk_indices(np.ones(300_000, np.float32), 123).size == 123


def test_k_rules():
    assert k_for(1000, 0.01) == 10 and k_for(10, 0.01) == 1 and k_for(0, 0.5) == 0
    assert k_for(10, 100) == 10 and k_for(1000, 100) == 100


def test_randk_deterministic_and_uniform():
    a = randk_indices(1000, 50, np.random.default_rng(3))
    b = randk_indices(1000, 50, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    counts = np.zeros(20)
    rng = np.random.default_rng(0)
    for _ in range(2000):
        counts += np.bincount(randk_indices(20, 5, rng), minlength=20)
    assert np.all(np.abs(counts - 500) < 5 * np.sqrt(500))


@pytest.mark.parametrize(
    "spec", ["topk:0.1", "topk:3+q8", "randk:0.5+fp16", "topk:0.2:mask=bitmap+sign"]
)
def test_sparse_decode_places_values(spec):
    x = np.arange(1, 31, dtype=np.float32).reshape(5, 6)
    codec = parse_codec(spec)
    y = codec.decode(codec.encode("w", x, np.random.default_rng(0))[0])
    nz = y != 0
    assert nz.sum() == k_for(30, codec.k)
    if spec.startswith("topk") and "sign" not in spec:
        np.testing.assert_allclose(y[nz], x[nz], rtol=0.02)
