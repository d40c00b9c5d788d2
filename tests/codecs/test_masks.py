import numpy as np
import pytest
from fedsim.codecs.masks import (
    bitmap_nbytes,
    decode_mask,
    encode_mask,
    golomb_nbytes,
    index_dtype,
    mask_nbytes,
    rice_parameter,
)
from fedsim.codecs.wire import WireError
from hypothesis import given, settings
from hypothesis import strategies as st


@st.composite
def supports(draw):
    n = draw(st.integers(0, 5000))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    k = draw(st.integers(0, n))
    if draw(st.booleans()) and n:  # clustered supports too
        start = rng.integers(0, n - k + 1)
        return n, np.arange(start, start + k, dtype=np.int64)
    return n, np.sort(rng.choice(n, k, replace=False)).astype(np.int64)


@settings(max_examples=60, deadline=None)
@given(supports(), st.sampled_from(["auto", "bitmap", "index", "golomb"]))
def test_round_trip_and_exact_size(support, kind):
    n, idx = support
    chosen, buffers, params = encode_mask(kind, idx, n)
    assert (
        sum(b.nbytes for b in buffers) == mask_nbytes(chosen, idx, n) == mask_nbytes(kind, idx, n)
    )
    np.testing.assert_array_equal(decode_mask(chosen, buffers, params, n, idx.size), idx)


@settings(max_examples=40, deadline=None)
@given(supports())
def test_auto_is_smallest_and_rice_parameter_optimal(support):
    n, idx = support
    sizes = {k: mask_nbytes(k, idx, n) for k in ("bitmap", "index", "golomb")}
    assert mask_nbytes("auto", idx, n) == min(sizes.values())
    gaps = np.diff(idx, prepend=-1) - 1
    b, size = rice_parameter(gaps)
    for other in range(0, 40):
        alt = (idx.size + int((gaps >> other).sum()) + 7) // 8 + (idx.size * other + 7) // 8
        assert size <= alt
    assert golomb_nbytes(idx) == size


def test_index_width():
    assert index_dtype(256) == np.uint8 and index_dtype(257) == np.uint16
    assert index_dtype(65536) == np.uint16 and index_dtype(65537) == np.uint32
    assert index_dtype(2**33) == np.uint64
    assert bitmap_nbytes(9) == 2


def test_golomb_layout_example():
    # gaps 0, 5; b = 0 is optimal: unary bits 0 111110 (stream order) = 0b0111110
    chosen, (unary, rem), params = encode_mask("golomb", np.array([0, 6]), 100)
    assert params == {"rice": 0}
    assert unary.tolist() == [0b0111110] and rem.size == 0
    # gaps 9, 13 with b = 2 (b = 3, 4 tie; the smallest wins): q = 2, 3 -> stream 110 1110,
    # bits 0, 1, 3, 4, 5 set = 0b0111011; remainders 1, 1 -> 0b0101
    chosen, (unary, rem), params = encode_mask("golomb", np.array([9, 23]), 100)
    assert params == {"rice": 2}
    assert unary.tolist() == [0b0111011] and rem.tolist() == [0b0101]


def test_rejects_inconsistent_masks():
    n = 50
    idx = np.array([3, 9, 20], np.int64)
    _, bufs, params = encode_mask("bitmap", idx, n)
    with pytest.raises(WireError):
        decode_mask("bitmap", bufs, params, n, 2)
    with pytest.raises(WireError):
        decode_mask("index", (np.array([9, 3, 20], np.uint8),), {}, n, 3)
    with pytest.raises(WireError):
        decode_mask("index", (np.array([3, 9, 60], np.uint8),), {}, n, 3)
    with pytest.raises(WireError):
        decode_mask("index", (np.array([3, 3, 4], np.uint8),), {}, n, 3)
    _, bufs, params = encode_mask("golomb", idx, n)
    with pytest.raises(WireError):
        decode_mask("golomb", bufs, params, 10, 3)  # beyond the size
    with pytest.raises(WireError):
        decode_mask("golomb", bufs, {"rice": 99}, n, 3)
    with pytest.raises(WireError):
        decode_mask("golomb", (bufs[0][:0], bufs[1]), params, n, 3)
    with pytest.raises(WireError):
        decode_mask("golomb", (np.full(1000, 255, np.uint8), bufs[1]), params, n, 3)
    with pytest.raises(WireError):
        decode_mask("bogus", bufs, params, n, 3)
