import numpy as np
import pytest
from fedsim.codecs.pipeline import parse_codec
from fedsim.codecs.wire import TensorRecord, WireError
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.mark.parametrize("s", [1, 2, 4, 16, 255])
@pytest.mark.parametrize("n", [1, 10, 300])
def test_unbiased_and_variance_bound(s, n):
    rng = np.random.default_rng(s * 1000 + n)
    x = rng.standard_normal(n).astype(np.float32)
    codec = parse_codec(f"qsgd:s={s}")
    draws = np.stack([codec.decode(codec.encode("w", x, rng)[0]) for _ in range(2000)])
    err = draws - x
    sq = (err.astype(np.float64) ** 2).sum(axis=1)
    bound = min(n / s**2, np.sqrt(n) / s) * float((x.astype(np.float64) ** 2).sum())
    # E||Q(x) - x||^2 <= bound (Alistarh et al. 2017, Lemma 3.1), up to 3 standard errors
    assert sq.mean() <= bound + 3 * sq.std() / np.sqrt(len(sq)) + 1e-9
    assert abs(err.mean()) <= 3 * err.std() / np.sqrt(err.size) + 1e-9


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3000), st.integers(0, 500), st.sampled_from(["", ":bucket=64"]))
def test_size_and_levels(s, n, opt):
    codec = parse_codec(f"qsgd:s={s}{opt}")
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    rec = codec.encode("w", x, np.random.default_rng(0))[0]
    assert sum(b.nbytes for b in rec.buffers) == codec.encoded_nbytes((n,))
    y = codec.decode(rec)
    if n:
        assert np.abs(y).max() <= np.linalg.norm(x) * 1.0001 + 1e-6


def test_rejects_level_above_s():
    codec = parse_codec("qsgd:s=5")  # 3 level bits + sign: codes 6, 7 are invalid
    rec = codec.encode("w", np.ones(2, np.float32), np.random.default_rng(0))[0]
    bad = np.array([0x07], np.uint8)  # level 7 for value 0, level 0 for value 1
    with pytest.raises(WireError):
        codec.decode(TensorRecord("w", rec.codec, (2,), {}, (bad, rec.buffers[1])))
    with pytest.raises(WireError):
        codec.decode(
            TensorRecord("w", rec.codec, (2,), {}, (rec.buffers[0], np.array([-1.0], np.float32)))
        )


def test_zero_vector():
    codec = parse_codec("qsgd:s=4")
    y = codec.decode(codec.encode("w", np.zeros(10, np.float32), np.random.default_rng(0))[0])
    assert not y.any()
