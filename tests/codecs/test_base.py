import numpy as np
import pytest
from fedsim.codecs.base import Codec
from fedsim.codecs.error_feedback import ErrorFeedback
from fedsim.codecs.pipeline import parse_codec


def test_codec_is_abstract():
    with pytest.raises(TypeError):
        Codec()


def test_error_feedback_parts_are_the_inner_codecs():
    inner = parse_codec("q4")
    ef = ErrorFeedback(inner)
    x = np.linspace(-1, 1, 37, dtype=np.float32)
    a = ef.encode_parts(x, np.random.default_rng(0))
    b = inner.encode_parts(x, np.random.default_rng(0))
    assert a[1] == b[1]
    for u, v in zip(a[0], b[0], strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    assert ef.encoded_nbytes(x.shape) == inner.encoded_nbytes(x.shape)
