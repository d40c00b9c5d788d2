"""The strict decoder, case by case (issue 17 Build item 7, issue 16 Build item 5): every
malformed input is a WireError, ints are ints, codecs refuse params they do not write, and
decoding checks meaning (scales, levels, indices), not just sizes. And the other side:
whatever an encoder writes still decodes."""

import msgpack
import numpy as np
import pytest
from fedsim.codecs import (
    TensorRecord,
    WireError,
    decode_tensors,
    from_blob,
    pack_message,
    parse_codec,
    unpack_message,
)
from fedsim.codecs.bitpack import pack_codes, unpack_codes
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

F32 = np.finfo(np.float32)
RNG = np.random.default_rng(5)


def _encode(spec, x):
    rec, _ = parse_codec(spec).encode("w", np.asarray(x, np.float32), np.random.default_rng(0))
    return rec


def _with(rec, shape=None, params=None, buffers=None, codec=None):
    return TensorRecord(
        rec.name,
        rec.codec if codec is None else codec,
        rec.shape if shape is None else shape,
        rec.params if params is None else params,
        rec.buffers if buffers is None else tuple(buffers),
    )


def _round_trip(rec):
    """Through the wire, then decoded: the path of a real message."""
    frames = [bytes(f) for f in pack_message("update", {}, [rec])]
    return decode_tensors(unpack_message(frames).tensors)["w"]


def _rejects(rec):
    with pytest.raises(WireError) as exc:
        _round_trip(rec)
    assert type(exc.value) is WireError
    with pytest.raises(WireError):  # the codec alone, on a record built in memory
        parse_codec(rec.codec).decode(rec)


def _header(frames):
    return msgpack.unpackb(frames[0])


def _unpack_with(header, frames):
    return unpack_message([msgpack.packb(header), *frames[1:]])


# ---- shapes and ints ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape", [(2**63 - 1, 0), (0, 2**63 - 1), (2**62, 0, 4), (2**64 - 1, 0), (2**40, 0, 2**40)]
)
@pytest.mark.parametrize("spec", ["fp32", "q4", "q4:per=channel", "sign", "topk:0.1:mask=bitmap"])
def test_empty_tensor_with_absurd_dimensions(shape, spec):
    _rejects(_with(_encode(spec, np.zeros(0)), shape=shape))


def test_shape_entries_are_ints():
    frames = pack_message("m", {}, [_encode("fp32", np.zeros((2, 3)))])
    for bad in ([2, 3.0], [True, 6], [2, -3], [2, "3"], [2, None], [[2], 3], [1] * 33):
        header = _header(frames)
        header["tensors"][0]["shape"] = bad
        with pytest.raises(WireError):
            _unpack_with(header, frames)


@pytest.mark.parametrize("version", [True, 1.0, "1", None, [1], 0, 2])
def test_version_must_be_the_int_1(version):
    frames = pack_message("m", {}, [])
    header = _header(frames)
    header["version"] = version
    with pytest.raises(WireError, match="version"):
        _unpack_with(header, frames)


@pytest.mark.parametrize("key", ["frame", "nbytes"])
@pytest.mark.parametrize("bad", [True, 1.0, "1"])
def test_buffer_ints_are_ints(key, bad):
    one_byte = TensorRecord("w", "fp32", (1,), {}, (b"\x01",))  # frame 1, nbytes 1
    frames = pack_message("m", {}, [one_byte])
    unpack_message(frames)  # the header is fine as written
    header = _header(frames)
    header["tensors"][0]["buffers"][0][key] = bad
    with pytest.raises(WireError):
        _unpack_with(header, frames)


@pytest.mark.parametrize(
    "ext", [msgpack.ExtType(1, b"ab"), msgpack.Timestamp(1, 0), msgpack.ExtType(127, b"x" * 300)]
)
def test_ext_types_are_refused(ext):
    frames = pack_message("m", {}, [_encode("topk:1", [1.0, 2.0])])
    for where in ("meta", "params", "shape"):
        header = _header(frames)
        if where == "meta":
            header["meta"] = {"t": ext}
        elif where == "params":
            header["tensors"][0]["params"]["k"] = ext
        else:
            header["tensors"][0]["shape"] = [ext]
        with pytest.raises(WireError, match="ext"):
            _unpack_with(header, frames)


def test_frames_must_be_contiguous_buffers():
    frames = pack_message("m", {}, [_encode("fp32", [1.0, 2.0])])
    strided = memoryview(bytes(frames[1]) * 2)[::2]
    with pytest.raises(WireError):
        unpack_message([frames[0], strided])
    with pytest.raises(WireError):
        unpack_message([frames[0], 12345])
    # any contiguous buffer works: bytes, bytearray, a float32 array's memoryview
    arr = np.array([1.0, 2.0], np.float32)
    for frame in (bytes(arr), bytearray(arr), memoryview(arr)):
        out = decode_tensors(unpack_message([frames[0], frame]).tensors)["w"]
        np.testing.assert_array_equal(out, arr)


# ---- params -------------------------------------------------------------------------------

DENSE = ["fp32", "fp16", "bf16", "q4", "q8:per=channel", "q3:bucket=2:stochastic", "qsgd:s=16"]
DENSE += ["sign", "sign:bucket=3"]


@pytest.mark.parametrize("spec", DENSE)
@pytest.mark.parametrize("params", [{"k": 5}, {"junk": 1}, {"values": {}}, {"": None}])
def test_dense_codecs_refuse_params(spec, params):
    rec = _encode(spec, RNG.standard_normal((4, 3)))
    assert rec.params == {}
    _rejects(_with(rec, params=params))


@pytest.mark.parametrize(
    "spec, change",
    [
        ("topk:0.5:mask=bitmap", {"rice": 0}),  # rice only with golomb
        ("topk:0.5:mask=index", {"rice": 3}),
        ("topk:0.5:mask=golomb", {"rice": None}),  # missing rice
        ("topk:0.5", {"values": {}}),  # values only when nonempty
        ("topk:0.5+q4", {"values": {"k": 1}}),  # and the value codec has no params
        ("topk:0.5+q4", {"values": []}),
        ("topk:0.5", {"junk": 1}),
        ("topk:0.5", {"k": None}),
        ("topk:0.5", {"k": 3.0}),
        ("topk:1", {"k": True}),
        ("topk:0.5", {"mask": None}),
        ("topk:0.5", {"mask": "auto"}),
        ("topk:0.5:mask=golomb", {"rice": True}),
        ("topk:0.5:mask=golomb", {"rice": 1.0}),
    ],
)
def test_sparse_params_are_exact(spec, change):
    rec = _encode(spec, RNG.standard_normal(6))
    params = dict(rec.params)
    for key, value in change.items():
        if value is None and key in params:
            del params[key]
        else:
            params[key] = value
    _rejects(_with(rec, params=params))


# ---- quantizer scales ---------------------------------------------------------------------


def _scales(rec, index=-1):
    return np.array(rec.buffers[index], np.float32)


@pytest.mark.parametrize(
    "lo, step",
    [
        (0.0, -0.1),  # negative step (the corrupt result of issue 16)
        (0.0, -0.0),
        (0.0, 1e-40),  # subnormal: the encoder never writes one
        (0.0, np.nan),
        (0.0, np.inf),
        (np.nan, 0.1),
        (-np.inf, 0.1),
        (F32.max, F32.max),  # lo + 15 * step overflows
        (1e38, 3e37),
    ],
)
@pytest.mark.parametrize("spec", ["q4", "q4:bucket=3", "topk:0.5+q4"])
def test_quantizer_scales(spec, lo, step):
    rec = _encode(spec, RNG.standard_normal(6))
    scales = _scales(rec)
    scales[0], scales[1] = lo, step
    _rejects(_with(rec, buffers=[*rec.buffers[:-1], scales]))


def test_zero_step_means_all_codes_zero():
    for spec, x in [
        ("q4", np.full(5, 2.5)),
        ("q8:per=channel", np.array([[1.0, 1.0], [3.0, -1.0]])),
        ("q3:bucket=2", np.array([0.0, 0.0, 1.0, 2.0, 7.0])),
    ]:
        rec = _encode(spec, x)
        np.testing.assert_allclose(_round_trip(rec), x, atol=0.5)  # valid as written
        bits = int(spec[1])
        codes = unpack_codes(np.asarray(rec.buffers[0]), bits, x.size)
        codes[0] = 1  # the first group is constant: step 0
        _rejects(_with(rec, buffers=[pack_codes(codes, bits), rec.buffers[1]]))


@pytest.mark.parametrize("spec", ["sign", "sign:per=channel", "topk:0.5+sign"])
@pytest.mark.parametrize("value", [-1.0, -0.0, np.nan, np.inf, -np.inf])
def test_sign_scales(spec, value):
    rec = _encode(spec, RNG.standard_normal((2, 3)))
    scales = _scales(rec)
    scales[0] = value
    _rejects(_with(rec, buffers=[*rec.buffers[:-1], scales]))


def test_sign_zero_scale_with_sign_bits_is_valid():
    """Subnormal values whose mean |x| rounds to 0: the encoder writes scale 0 and a set
    sign bit, so the decoder must take it (and gives -0.0)."""
    x = np.array([-1e-45, 0.0], np.float32)
    rec = _encode("sign", x)
    assert _scales(rec)[0] == 0 and np.asarray(rec.buffers[0])[0] == 1
    assert np.signbit(_round_trip(rec)[0])


@pytest.mark.parametrize("spec", ["qsgd:s=5", "qsgd:s=16:bucket=2", "topk:0.5+qsgd:s=3"])
@pytest.mark.parametrize("value", [-1.0, -0.0, np.nan, np.inf])
def test_qsgd_norms(spec, value):
    rec = _encode(spec, RNG.standard_normal(6))
    norms = _scales(rec)
    norms[0] = value
    _rejects(_with(rec, buffers=[*rec.buffers[:-1], norms]))


def test_qsgd_levels_and_zero_norms():
    rec = _encode("qsgd:s=5", RNG.standard_normal(6))  # 3 level bits + sign: 6, 7 invalid
    codes = unpack_codes(np.asarray(rec.buffers[0]), 4, 6)
    for bad in (6, 7, 6 | 8):
        c = codes.copy()
        c[2] = bad
        _rejects(_with(rec, buffers=[pack_codes(c, 4), rec.buffers[1]]))
    zero = _encode("qsgd:s=5:bucket=3", np.array([0, 0, 0, 1, 2, 3], np.float32))
    np.testing.assert_array_equal(_round_trip(zero)[:3], 0)
    codes = unpack_codes(np.asarray(zero.buffers[0]), 4, 6)
    codes[1] = 1  # a level in the all-zero bucket
    _rejects(_with(zero, buffers=[pack_codes(codes, 4), zero.buffers[1]]))


# ---- masks --------------------------------------------------------------------------------


def test_index_mask_semantics():
    rec = _encode("topk:0.5:mask=index", np.arange(1, 11, dtype=np.float32))  # idx 5..9
    idx = np.asarray(rec.buffers[0]).copy()
    assert idx.tolist() == [5, 6, 7, 8, 9]
    for bad in ([5, 6, 7, 8, 10], [5, 6, 6, 8, 9], [5, 7, 6, 8, 9], [9, 8, 7, 6, 5], [5] * 5):
        _rejects(_with(rec, buffers=[np.array(bad, idx.dtype), rec.buffers[1]]))


def test_bitmap_popcount_and_padding():
    rec = _encode("topk:0.5:mask=bitmap", np.arange(1, 11, dtype=np.float32))
    bits = np.asarray(rec.buffers[0]).copy()
    for byte, flip in [(0, 1), (1, 1 << 7), (0, 1 << 5)]:  # popcount, padding, popcount
        b = bits.copy()
        b[byte] ^= flip
        _rejects(_with(rec, buffers=[b, rec.buffers[1]]))


# ---- what encoders write still decodes ---------------------------------------------------

ALL = [
    "fp16",
    "bf16",
    "q1",
    "q4",
    "q8:stochastic",
    "q16",
    "q2:per=channel",
    "q5:bucket=3",
    "qsgd:s=1",
    "qsgd:s=16:bucket=4",
    "sign",
    "sign:bucket=2",
    "topk:0.3:mask=golomb+q4",
    "randk:0.5:mask=bitmap+sign",
]
# every finite float32, subnormals and values near the largest included
extreme = st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=True)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=2, max_side=7), elements=extreme),
    st.sampled_from(ALL),
)
def test_encoder_output_always_decodes(x, spec):
    codec = parse_codec(spec)
    try:
        rec, _ = codec.encode("w", x, np.random.default_rng(1))
    except ValueError:  # documented: the range exceeds float32 or a norm overflows
        return
    y = _round_trip(rec)
    assert y.shape == x.shape
    if spec.split(":")[0] not in ("fp16", "bf16"):
        assert np.isfinite(y).all()


def test_extreme_but_valid_quantizer_ranges_decode():
    for x in ([-1e38, 1e38], [F32.tiny, 2 * F32.tiny], [0.0, 1e-45], [3e38, 3e38]):
        for spec in ("q1", "q4", "q16", "q4:stochastic", "q8:bucket=1"):
            y = _round_trip(_encode(spec, x))
            assert np.isfinite(y).all()
            if not spec.endswith("stochastic"):
                step = (max(x) - min(x)) / ((1 << int(spec[1:].split(":")[0])) - 1)
                np.testing.assert_allclose(y, x, rtol=1e-6, atol=step / 2 + F32.tiny)


def test_range_at_the_float32_limit_is_refused_by_the_encoder():
    """hi - lo = FLT_MAX: x - (lo - step/2) overflows in the encoder (codes came out
    wrong) or lo + levels * step in the decoder; the encoder says so instead."""
    x = np.array([-F32.max / 2, F32.max / 2], np.float32)
    for spec in ("q1", "q4", "q16"):
        with pytest.raises(ValueError, match="float32"):
            _encode(spec, x)


def test_blob_reader_refuses_non_buffers():
    for bad in (memoryview(b"FSWB" * 10)[::2], "FSWB", 5, None):
        with pytest.raises(WireError):
            from_blob(bad)


def test_strict_unpackb_for_envelopes():
    from fedsim.codecs.wire import is_int, strict_unpackb

    assert strict_unpackb(msgpack.packb({"v": 1, "n": [1, 2]}), 100) == {"v": 1, "n": [1, 2]}
    for bad in (
        msgpack.packb({"t": msgpack.ExtType(3, b"zz")}),
        msgpack.packb({"t": msgpack.Timestamp(0, 5)}),
        msgpack.packb({1: 2}),  # non-str key
        msgpack.packb({"x": "y" * 200}),  # over the size limit
        b"\xc1",
        b"\x92\x01",  # truncated array
        None,
    ):
        with pytest.raises(WireError):
            strict_unpackb(bad, 100, "envelope")
    assert is_int(3) and not is_int(True) and not is_int(3.0) and not is_int("3")
