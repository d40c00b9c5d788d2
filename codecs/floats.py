"""Plain float codecs: fp32 (lossless), fp16 and bf16 (round-to-nearest-even)."""

from __future__ import annotations

import numpy as np

from .base import Codec, expect_array, expect_buffers, expect_no_params, numel


def to_bfloat16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), round-to-nearest-even; NaN stays a quiet NaN.

    Rounding as in the reference conversion of TensorFlow/PyTorch: add 0x7FFF plus the
    lowest kept bit, then truncate the low 16 bits.
    """
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    u = flat.view(np.uint32)
    out = ((u + (0x7FFF + ((u >> 16) & 1))) >> 16).astype(np.uint16)
    nan = np.isnan(flat)
    if nan.any():  # keep sign and payload's top bits, force the quiet bit
        out[nan] = ((u[nan] >> 16) | 0x0040).astype(np.uint16)
    return out.reshape(np.shape(x))


def from_bfloat16(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bits (uint16) -> float32, exact."""
    wide = bits.astype(np.uint32)
    wide <<= 16  # in place: one float32-sized array, no second temporary
    return wide.view(np.float32)


class _PlainValues(Codec):
    """Codecs whose one buffer holds every value as it is (`wire_dtype`): any bit pattern
    is a valid value, so checking a record needs no conversion."""

    wire_dtype: type

    def _values(self, buffers, params, shape) -> np.ndarray:
        expect_no_params(params, self.spec)
        expect_buffers(buffers, 1, self.spec)
        return expect_array(buffers[0], self.wire_dtype, numel(shape), self.spec)

    def check_parts(self, buffers, params, shape):
        self._values(buffers, params, shape)


class Float32Codec(_PlainValues):
    spec = "fp32"
    lossless = True
    wire_dtype = np.float32

    def encode_parts(self, x, rng):
        # Zero-copy: the record shares memory with x (do not mutate x before sending).
        return (x.reshape(-1),), {}

    def decode_parts(self, buffers, params, shape):
        return self._values(buffers, params, shape).astype(np.float32)

    def encoded_nbytes(self, shape):
        return 4 * numel(shape)


class Float16Codec(_PlainValues):
    spec = "fp16"
    wire_dtype = np.float16

    def encode_parts(self, x, rng):
        return (x.reshape(-1).astype(np.float16),), {}

    def decode_parts(self, buffers, params, shape):
        return self._values(buffers, params, shape).astype(np.float32)

    def encoded_nbytes(self, shape):
        return 2 * numel(shape)


class BFloat16Codec(_PlainValues):
    spec = "bf16"
    wire_dtype = np.uint16  # the top 16 bits of float32

    def encode_parts(self, x, rng):
        return (to_bfloat16(x.reshape(-1)),), {}

    def decode_parts(self, buffers, params, shape):
        return from_bfloat16(self._values(buffers, params, shape))

    def encoded_nbytes(self, shape):
        return 2 * numel(shape)
