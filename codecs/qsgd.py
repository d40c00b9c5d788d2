"""QSGD (Alistarh et al. 2017, "QSGD: Communication-efficient SGD via gradient
quantization and encoding", eq. 1): per group, the L2 norm, and for each value a sign and
a level l in 0..s drawn so that E[norm * sign * l / s] = x (unbiased), with variance
E||Q(x) - x||^2 <= min(n / s^2, sqrt(n) / s) * ||x||^2 (their Lemma 3.1).

Each value is one code of b + 1 bits, b = bit_length(s): the level in the low b bits and
the sign (1 = negative) in bit b, packed LSB-first (bitpack.py). The norms are float32.
"""

from __future__ import annotations

import numpy as np

from .base import (
    expect_array,
    expect_buffers,
    expect_no_params,
    expect_scales,
    numel,
)
from .bitpack import CHUNK, check_padding, code_dtype, pack_chunk, packed_nbytes, unpack_chunk
from .quantize import Grouped, group_reduce, per_value
from .wire import WireError

MAX_LEVELS = (1 << 15) - 1  # so that level + sign fit a 16-bit code


def _sq_norm(rows: np.ndarray, axis: int) -> np.ndarray:
    return np.sqrt(np.einsum("ij,ij->i", rows, rows, dtype=np.float64))


def _codes_in(codes: np.ndarray, flags: np.ndarray, a: int, b: int, length: int) -> np.ndarray:
    """The codes of values a..b whose group is flagged."""
    if flags.size == 1:
        return codes if flags[0] else codes[:0]
    return codes[flags[np.arange(a, b) // length]]


class QSGDCodec(Grouped):
    """qsgd:s=S[:bucket=B]"""

    def __init__(self, levels: int, per: str = "tensor", bucket: int | None = None):
        if not 1 <= levels <= MAX_LEVELS:
            raise ValueError(f"qsgd levels s must be in 1..{MAX_LEVELS}, got {levels}")
        super().__init__(per, bucket)
        self.levels = levels
        self.level_bits = levels.bit_length()
        self.bits = self.level_bits + 1
        self.spec = f"qsgd:s={levels}{self._group_spec()}"

    def encode_parts(self, x, rng):
        flat = x.reshape(-1)
        n = flat.size
        groups, length = self.layout(x.shape)
        norms = group_reduce(flat, groups, length, _sq_norm)
        if not np.isfinite(norms).all():
            raise ValueError("cannot QSGD-encode non-finite values (or the norm overflows)")
        scale = np.divide(
            np.float32(self.levels), norms, out=np.zeros(groups, np.float32), where=norms > 0
        )
        dtype = code_dtype(self.bits)
        out = np.empty(packed_nbytes(n, self.bits), np.uint8)
        s = self.levels
        for a in range(0, n, CHUNK):
            b = min(a + CHUNK, n)
            chunk = flat[a:b]
            r = np.abs(chunk) * per_value(scale, a, b, length)  # in [0, s]
            r += rng.random(b - a, dtype=np.float32)
            level = r.astype(dtype)
            np.minimum(level, s, out=level)
            level |= (chunk < 0).astype(dtype) << self.level_bits
            out[a * self.bits // 8 : (b * self.bits + 7) // 8] = pack_chunk(level, self.bits)
        return (out, norms), {}

    def decode_parts(self, buffers, params, shape):
        expect_no_params(params, self.spec)
        expect_buffers(buffers, 2, self.spec)
        n = numel(shape)
        groups, length = self.layout(shape)
        packed = expect_array(buffers[0], np.uint8, packed_nbytes(n, self.bits), self.spec)
        norms = expect_array(buffers[1], np.float32, groups, self.spec)
        expect_scales(norms, self.spec, nonnegative=True)
        unit = norms / np.float32(self.levels)
        with np.errstate(over="ignore"):
            if not np.isfinite(np.float32(self.levels) * unit).all():
                raise WireError(f"{self.spec}: norm * level overflows float32")
        check_padding(packed, self.bits, n)
        zero = None if norms.all() else norms == 0
        mask = (1 << self.level_bits) - 1
        out = np.empty(n, np.float32)
        for a in range(0, n, CHUNK):  # chunks keep the temporaries small
            b = min(a + CHUNK, n)
            src = packed[a * self.bits // 8 : (b * self.bits + 7) // 8]
            codes = unpack_chunk(src, self.bits, b - a)
            level = codes & mask
            if int(level.max()) > self.levels:
                raise WireError(f"{self.spec}: level above s={self.levels}")
            # a zero norm comes from an all-zero group, which the encoder codes as all zeros
            if zero is not None and _codes_in(codes, zero, a, b, length).any():
                raise WireError(f"{self.spec}: nonzero code in a group whose norm is 0")
            o = out[a:b]
            np.copyto(o, level, casting="unsafe")
            o *= per_value(unit, a, b, length)
            sign = codes >> self.level_bits  # 0 or 1
            np.negative(o, out=o, where=sign.view(bool) if sign.itemsize == 1 else sign != 0)
        return out

    def encoded_nbytes(self, shape):
        groups, _ = self.layout(shape)
        return packed_nbytes(numel(shape), self.bits) + 4 * groups
