"""Codecs split over threads give bit-identical results to the one-thread codec."""

from __future__ import annotations

import numpy as np
import pytest
from fedsim.codecs import parallel, parse_codec
from fedsim.codecs.bitpack import CHUNK

SPECS = [
    "q4",
    "q4:stochastic",
    "q8:stochastic",  # float32 uniforms (levels >= 128)
    "q3",
    "q2:stochastic",
    "q16",
    "q4:per=channel",
    "q4:bucket=1000:stochastic",
    "ef(q4:stochastic)",
]


@pytest.fixture
def threads():
    old = parallel.threads()
    yield parallel.set_threads
    parallel.set_threads(old)


def _encode_decode(spec: str, x: np.ndarray, n_threads: int, seed: int = 3):
    parallel.set_threads(n_threads)
    codec = parse_codec(spec)
    rng = np.random.default_rng(seed)
    state = (
        {"residual": np.full(x.size, 0.01, np.float32).reshape(x.shape)} if "ef(" in spec else None
    )
    rec, new_state = codec.encode("w", x, rng, state)
    tail = rng.random()  # the generator's position after encoding must match too
    return rec, codec.decode(rec), new_state, tail


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("n", [4 * CHUNK + 12_345, 7 * CHUNK])
def test_threads_give_the_same_bytes_as_one_thread(threads, spec, n):
    x = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    if n % 7 == 0:
        x = x.reshape(7, -1)  # 7 channels for per=channel
    one = _encode_decode(spec, x, 1)
    assert len(parallel.parts(x.size)) == 1
    for t in (2, 3):
        parallel.set_threads(t)
        assert len(parallel.parts(x.size)) == t  # really split
        many = _encode_decode(spec, x, t)
        assert many[0].params == one[0].params
        for b1, bt in zip(one[0].buffers, many[0].buffers, strict=True):
            assert np.asarray(b1).tobytes() == np.asarray(bt).tobytes()
        assert one[1].tobytes() == many[1].tobytes()
        assert one[3] == many[3]
        if one[2] is not None:
            assert one[2]["residual"].tobytes() == many[2]["residual"].tobytes()


def test_parts_are_whole_chunks_and_cover_the_tensor(threads):
    threads(3)
    n = 10 * CHUNK + 7
    spans = parallel.parts(n)
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(a % CHUNK == 0 for a, _ in spans)
    assert all(b == a2 for (_, b), (a2, _) in zip(spans, spans[1:], strict=False))
    assert parallel.parts(CHUNK) == [(0, CHUNK)]  # small tensors stay in one thread


def test_a_nan_in_any_part_is_still_refused(threads):
    threads(2)
    x = np.zeros(8 * CHUNK, np.float32)
    x[-1] = np.nan  # in the last part
    with pytest.raises(ValueError, match="non-finite"):
        parse_codec("q4").encode("w", x, np.random.default_rng(0))


@pytest.mark.parametrize("make", ["buffered-pcg64", "mt19937", "philox"])
def test_stochastic_threads_keep_the_generator_stream(threads, make):
    # each part draws from a copy of the generator jumped ahead (PCG64, Philox) or from
    # numbers drawn in order (MT19937 cannot jump); the caller's generator ends where the
    # one-thread loop leaves it, including a buffered 32-bit half
    def gen():
        if make == "mt19937":
            return np.random.Generator(np.random.MT19937(11))
        if make == "philox":
            return np.random.Generator(np.random.Philox(11))
        g = np.random.default_rng(11)
        g.random(dtype=np.float32)  # leaves half of a 64-bit draw buffered
        return g

    x = np.random.default_rng(1).standard_normal(6 * CHUNK + 3, dtype=np.float32)
    codec = parse_codec("q4:stochastic")
    out = {}
    for t in (1, 2):
        threads(t)
        g = gen()
        rec, _ = codec.encode("w", x, g)
        out[t] = (np.asarray(rec.buffers[0]).tobytes(), g.random(3).tolist(), g.integers(9, size=3))
    assert out[1][0] == out[2][0] and out[1][1] == out[2][1]
    assert out[1][2].tolist() == out[2][2].tolist()
