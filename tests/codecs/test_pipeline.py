import numpy as np
import pytest
from fedsim.codecs import (
    TensorRecord,
    WireError,
    decode_tensors,
    encode_tensors,
    pack_message,
    parse_codec,
    payload_bytes,
    unpack_message,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

SPECS = [
    "fp32",
    "fp16",
    "bf16",
    "q1",
    "q4",
    "q8",
    "q16",
    "q4:stochastic",
    "q8:per=channel",
    "q4:bucket=512:stochastic",
    "q5:bucket=3",
    "qsgd:s=16",
    "qsgd:s=2:bucket=64",
    "sign",
    "sign:per=channel",
    "topk:0.01",
    "randk:0.01",
    "topk:0.1+q8",
    "topk:7:mask=index+q4",
    "randk:0.3:mask=bitmap+bf16",
    "topk:0.05:mask=golomb+qsgd:s=8",
    "ef(topk:0.01+q8)",
    "ef(q4)",
    "ef(sign)",
]
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=12)


@pytest.mark.parametrize("spec", SPECS)
def test_spec_is_canonical(spec):
    assert parse_codec(spec).spec == spec
    assert parse_codec(parse_codec(spec).spec).spec == spec


@pytest.mark.parametrize(
    "alias,canonical",
    [
        ("Q4", "q4"),
        ("q4:per=tensor", "q4"),
        ("q4:stochastic:bucket=8", "q4:bucket=8:stochastic"),
        ("qsgd", "qsgd:s=16"),
        ("topk:k=0.01", "topk:0.01"),
        ("topk:0.01:mask=auto+fp32", "topk:0.01"),
        ("topk:mask=golomb:0.5", "topk:0.5:mask=golomb"),
        (" ef(topk:1e-3) ", "ef(topk:0.001)"),
    ],
)
def test_aliases(alias, canonical):
    assert parse_codec(alias).spec == canonical


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "q0",
        "q17",
        "q4:per=row",
        "q4:bucket=0",
        "q4:bucket=x",
        "q4:foo",
        "fp32:x",
        "topk",
        "topk:0",
        "topk:1.5",
        "topk:-3",
        "topk:0.1:mask=zip",
        "q8+topk:0.1",
        "topk:0.1+topk:0.1",
        "ef(fp32)",
        "ef(ef(q4))",
        "ef(q4",
        "qsgd:s=0",
        "q4+q8",
        "zip",
        "q4:q4",
        "q4:stochastic:stochastic",
        "q4:per=channel:bucket=4",
        None,
        "topk:0.1+q4+q8",
    ],
)
def test_bad_specs_raise_one_line_value_error(bad):
    with pytest.raises(ValueError) as exc:
        parse_codec(bad)
    assert "\n" not in str(exc.value)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(SPECS), shapes, st.integers(0, 2**31))
def test_predicted_size_equals_real_frames(spec, shape, seed):
    codec = parse_codec(spec)
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    rec, _ = codec.encode("t", x, np.random.default_rng(seed))
    frames = pack_message("update", {}, [rec])
    real = payload_bytes(frames[1:])
    if codec.fixed_size:
        assert codec.encoded_nbytes(tuple(shape)) == real
    else:
        with pytest.raises(ValueError):
            codec.encoded_nbytes(tuple(shape))
    assert codec.encoded_nbytes_of(x, np.random.default_rng(seed)) == real
    y = decode_tensors(unpack_message(frames).tensors)["t"]
    assert y.shape == x.shape and y.dtype == np.float32
    if codec.lossless:
        np.testing.assert_array_equal(y, x)


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.float32, shapes, elements=st.floats(width=32, allow_nan=False)))
def test_lossless_and_exact_float_round_trips(x):
    for spec, cast in (("fp32", np.float32), ("fp16", np.float16), ("bf16", None)):
        codec = parse_codec(spec)
        if cast is None:  # bf16-representable values: keep the top 16 bits
            x = (x.view(np.uint32) & 0xFFFF0000).view(np.float32)
        elif cast is np.float16:
            with np.errstate(over="ignore"):
                x = x.astype(np.float16).astype(np.float32)
        y = codec.decode(codec.encode("w", x, np.random.default_rng(0))[0])
        np.testing.assert_array_equal(y, x)


def test_bf16_rounds_to_nearest_even():
    from fedsim.codecs.floats import from_bfloat16, to_bfloat16

    u = np.array(
        [0x3F808000, 0x3F818000, 0x3F808001, 0x7F7FFFFF, 0x7FC00001, 0xFF800000], np.uint32
    )
    out = to_bfloat16(u.view(np.float32))
    assert out[:4].tolist() == [0x3F80, 0x3F82, 0x3F81, 0x7F80]
    assert np.isnan(from_bfloat16(out[4:5]))[0] and out[5] == 0xFF80


def test_deterministic_bytes():
    rng_x = np.random.default_rng(0)
    tensors = {f"t{i}": rng_x.standard_normal((20, 30)).astype(np.float32) for i in range(3)}
    for spec in SPECS:
        codec = parse_codec(spec)
        runs = []
        for _ in range(2):
            recs, _ = encode_tensors(tensors, codec, np.random.default_rng(42), None)
            runs.append(b"".join(bytes(f) for f in pack_message("m", {}, recs)))
        assert runs[0] == runs[1], spec


def test_decode_rejects_unknown_or_noncanonical_codec():
    good = parse_codec("q4").encode("w", np.ones(3, np.float32), np.random.default_rng(0))[0]
    for name in ("nope", "Q4", "ef(q4)", "q4:per=tensor"):
        bad = TensorRecord("w", name, good.shape, good.params, good.buffers)
        with pytest.raises(WireError):
            decode_tensors([bad])
    with pytest.raises(WireError):
        decode_tensors([good, good])


def test_sparse_decode_validates_params():
    codec = parse_codec("topk:0.5")
    rec = codec.encode("w", np.arange(10, dtype=np.float32), np.random.default_rng(0))[0]
    for params in (
        {**rec.params, "k": 4},
        {**rec.params, "k": 11},
        {**rec.params, "mask": "auto"},
        {**rec.params, "zzz": 1},
        {**rec.params, "mask": 3},
    ):
        with pytest.raises(WireError):
            codec.decode(TensorRecord("w", rec.codec, rec.shape, params, rec.buffers))


def test_check_tensors_refuses_exactly_what_decoding_refuses():
    import numpy as np
    import pytest
    from fedsim.codecs.pipeline import check_tensors, decode_tensors, encode_tensors, parse_codec
    from fedsim.codecs.wire import TensorRecord, WireError

    rng = np.random.default_rng(0)
    x = {"a": rng.normal(size=(4, 5)).astype(np.float32)}
    for spec in ("fp32", "fp16", "bf16", "q4", "qsgd:s=4", "sign", "topk:0.2", "topk:0.2+q8"):
        (rec,), _ = encode_tensors(x, parse_codec(spec), rng)
        check_tensors([rec])
        short = TensorRecord(rec.name, rec.codec, (8, 8), rec.params, rec.buffers)
        with pytest.raises(WireError):
            decode_tensors([short])
        with pytest.raises(WireError):
            check_tensors([short])
    with pytest.raises(WireError):
        check_tensors([rec, rec])
