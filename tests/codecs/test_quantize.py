import numpy as np
import pytest
from fedsim.codecs.bitpack import pack_codes, packed_nbytes, unpack_codes
from fedsim.codecs.pipeline import parse_codec
from fedsim.codecs.quantize import QuantizeCodec, group_layout
from fedsim.codecs.wire import WireError
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

FAST = settings(max_examples=40, deadline=None)
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=9)
TINY = np.finfo(np.float32).tiny  # the smallest step used
finite = st.floats(-1e4, 1e4, allow_nan=False, width=32)


@FAST
@given(st.integers(1, 16), st.integers(0, 300), st.integers(0, 2**31 - 1))
def test_bitpack_round_trip_and_size(bits, n, seed):
    codes = (
        np.random.default_rng(seed)
        .integers(0, 1 << bits, n)
        .astype(np.uint16 if bits > 8 else np.uint8)
    )
    packed = pack_codes(codes, bits)
    assert packed.size == packed_nbytes(n, bits) == -(-n * bits // 8)
    np.testing.assert_array_equal(unpack_codes(packed, bits, n), codes)


def test_bitpack_is_lsb_first():
    assert pack_codes(np.array([1, 2], np.uint8), 4).tolist() == [0x21]
    assert pack_codes(np.array([1, 0, 0, 0, 0, 0, 0, 1], np.uint8), 1).tolist() == [0x81]
    assert pack_codes(np.array([5, 3], np.uint8), 3).tolist() == [0b011101]
    assert pack_codes(np.array([0x1234], np.uint16), 16).tolist() == [0x34, 0x12]


def test_bitpack_rejects_padding_bits():
    with pytest.raises(WireError):
        unpack_codes(np.array([0xF1], np.uint8), 4, 1)


def _step_bound(x, bits):
    return (x.max() - x.min()) / ((1 << bits) - 1) if x.size else 0.0


@FAST
@given(hnp.arrays(np.float32, shapes, elements=finite), st.integers(1, 16))
def test_deterministic_error_at_most_half_step(x, bits):
    codec = QuantizeCodec(bits)
    rec, _ = codec.encode("w", x, np.random.default_rng(0))
    y = codec.decode(rec)
    assert y.shape == x.shape
    step = _step_bound(x, bits)
    tol = step * (0.5 + (1 << bits) * 3e-7) + 4 * np.finfo(np.float32).eps * (
        np.abs(x).max() if x.size else 0
    )
    assert np.all(np.abs(y - x) <= tol + TINY)


@FAST
@given(
    hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=3, max_side=8), elements=finite),
    st.integers(2, 8),
    st.sampled_from(["per=channel", "bucket=5", "bucket=1", "bucket=64"]),
)
def test_grouped_error_bound_per_group(x, bits, grouping):
    codec = parse_codec(f"q{bits}:{grouping}")
    y = codec.decode(codec.encode("w", x, np.random.default_rng(0))[0])
    groups, length = group_layout(x.shape, codec.per, codec.bucket)
    flat, yf = x.reshape(-1), y.reshape(-1)
    for g in range(groups):
        seg = flat[g * length : (g + 1) * length]
        step = _step_bound(seg, bits)
        err = np.abs(yf[g * length : (g + 1) * length] - seg)
        assert np.all(err <= step * 0.5001 + 1e-6 * np.abs(seg).max() + TINY)


@pytest.mark.parametrize("bits", [1, 2, 4, 8, 12])
def test_stochastic_rounding_unbiased(bits):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(64).astype(np.float32)
    codec = QuantizeCodec(bits, stochastic=True)
    draws = np.stack([codec.decode(codec.encode("w", x, rng)[0]) for _ in range(3000)])
    err = draws - x
    se = err.std(axis=0, ddof=1) / np.sqrt(len(draws)) + 1e-12
    # every value's mean error within 3 standard errors (allow a few of 64 by chance)
    assert (np.abs(err.mean(axis=0)) <= 3 * se).mean() >= 0.95
    # and the pooled mean error is within 3 standard errors
    assert abs(err.mean()) <= 3 * err.std() / np.sqrt(err.size)
    step = (x.max() - x.min()) / ((1 << bits) - 1)
    assert np.abs(err).max() <= step * 1.0001


def test_constant_and_empty_tensors():
    for spec in ["q4", "q1", "q16:per=channel", "q3:bucket=4:stochastic", "sign"]:
        codec = parse_codec(spec)
        for x in (np.full((3, 4), 2.5, np.float32), np.zeros(0, np.float32), np.float32(7.0)):
            y = codec.decode(codec.encode("w", x, np.random.default_rng(0))[0])
            assert y.shape == np.shape(x)
            if spec.startswith("q"):
                np.testing.assert_allclose(y, x, rtol=1e-6)


def test_sizes_match_formula():
    x = np.random.default_rng(0).standard_normal((64, 3, 3, 3)).astype(np.float32)
    n = x.size
    assert parse_codec("q4").encoded_nbytes(x.shape) == -(-n // 2) + 8
    assert parse_codec("q4:per=channel").encoded_nbytes(x.shape) == -(-n // 2) + 8 * 64
    assert parse_codec("q3:bucket=100").encoded_nbytes(x.shape) == -(-n * 3 // 8) + 8 * 18
    assert parse_codec("sign").encoded_nbytes(x.shape) == -(-n // 8) + 4
    assert parse_codec("q4").encoded_nbytes((7,)) == 4 + 8


def test_sign_codec():
    x = np.array([1.0, -2.0, 3.0, -4.0, 0.0], np.float32)
    codec = parse_codec("sign")
    y = codec.decode(codec.encode("w", x, np.random.default_rng(0))[0])
    np.testing.assert_allclose(y, [2, -2, 2, -2, 2])


def test_rejects_non_finite_input():
    codec = parse_codec("q4")
    with pytest.raises(ValueError):
        codec.encode("w", np.array([1.0, np.nan], np.float32), np.random.default_rng(0))


def test_rejects_bad_scales_on_decode():
    codec = parse_codec("q4")
    rec = codec.encode("w", np.arange(6, dtype=np.float32), np.random.default_rng(0))[0]
    bad = rec.buffers[1].copy()
    bad[1] = np.inf
    from fedsim.codecs.wire import TensorRecord

    with pytest.raises(WireError):
        codec.decode(TensorRecord("w", "q4", rec.shape, {}, (rec.buffers[0], bad)))
    with pytest.raises(WireError):
        codec.decode(TensorRecord("w", "q4", rec.shape, {}, (rec.buffers[0][:-1], rec.buffers[1])))
    with pytest.raises(WireError):
        codec.decode(TensorRecord("w", "q4", rec.shape, {}, (rec.buffers[0],)))
