import numpy as np
import pytest
from fedsim.codecs.pipeline import encode_tensors, parse_codec
from hypothesis import given, settings
from hypothesis import strategies as st

SPECS = [
    "ef(topk:0.05)",
    "ef(topk:0.1+q8)",
    "ef(q2)",
    "ef(sign)",
    "ef(randk:0.2+q4:stochastic)",
    "ef(qsgd:s=4)",
    "ef(fp16)",
]


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(SPECS), st.integers(0, 3000), st.integers(0, 2**31))
def test_sent_plus_residual_equals_input_plus_old_residual(spec, n, seed):
    rng = np.random.default_rng(seed)
    codec = parse_codec(spec)
    x = rng.standard_normal(n).astype(np.float32)
    old = {"residual": rng.standard_normal(n).astype(np.float32)}
    old_copy = old["residual"].copy()
    rec, new = codec.encode("w", x, rng, old)
    sent = codec.decode(rec)
    np.testing.assert_allclose(sent + new["residual"], x + old_copy, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(old["residual"], old_copy)  # state not mutated


def test_residual_accumulates_and_eventually_sends():
    codec = parse_codec("ef(topk:1)")
    x = np.array([1.0, 0.5, 0.25], np.float32)
    state = None
    total = np.zeros(3, np.float32)
    for _ in range(4):
        rec, state = codec.encode("w", x, np.random.default_rng(0), state)
        total += codec.decode(rec)
    # everything sent plus what is left equals everything put in
    np.testing.assert_allclose(total + state["residual"], 4 * x)
    assert (total > 0).all()  # the small coordinates were sent at some point


def test_per_tensor_state_and_wire_spec():
    codec = parse_codec("ef(topk:0.5+q8)")
    rng = np.random.default_rng(0)
    tensors = {"b": np.ones(4, np.float32), "a": np.arange(6, dtype=np.float32)}
    recs, state = encode_tensors(tensors, codec, rng, None)
    assert [r.name for r in recs] == ["a", "b"] and set(state) == {"a", "b"}
    assert recs[0].codec == "topk:0.5+q8"
    recs2, state2 = encode_tensors(tensors, codec, rng, state)
    assert state2["a"]["residual"].shape == (6,)
    with pytest.raises(ValueError):
        codec.encode("a", np.ones(3, np.float32), rng, state["a"])


def test_ef_rejects_lossless():
    with pytest.raises(ValueError, match="lossless"):
        parse_codec("ef(fp32)")
