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


class Float32Codec(Codec):
    spec = "fp32"
    lossless = True

    def encode_parts(self, x, rng):
        # Zero-copy: the record shares memory with x (do not mutate x before sending).
        return (x.reshape(-1),), {}

    def decode_parts(self, buffers, params, shape):
        expect_no_params(params, self.spec)
        expect_buffers(buffers, 1, self.spec)
        return expect_array(buffers[0], np.float32, numel(shape), self.spec).astype(np.float32)

    def check_parts(self, buffers, params, shape):
        expect_no_params(params, self.spec)
        expect_buffers(buffers, 1, self.spec)
        expect_array(buffers[0], np.float32, numel(shape), self.spec)  # any float32 is valid

    def encoded_nbytes(self, shape):
        return 4 * numel(shape)


class Float16Codec(Codec):
    spec = "fp16"

    def encode_parts(self, x, rng):
        return (x.reshape(-1).astype(np.float16),), {}

    def decode_parts(self, buffers, params, shape):
        expect_no_params(params, self.spec)
        expect_buffers(buffers, 1, self.spec)
        return expect_array(buffers[0], np.float16, numel(shape), self.spec).astype(np.float32)

    def check_parts(self, buffers, params, shape):
        expect_no_params(params, self.spec)
        expect_buffers(buffers, 1, self.spec)
        expect_array(buffers[0], np.float16, numel(shape), self.spec)  # any float16 is valid

    def encoded_nbytes(self, shape):
        return 2 * numel(shape)


class BFloat16Codec(Codec):
    spec = "bf16"

    def encode_parts(self, x, rng):
        return (to_bfloat16(x.reshape(-1)),), {}

    def decode_parts(self, buffers, params, shape):
        expect_no_params(params, self.spec)
        expect_buffers(buffers, 1, self.spec)
        return from_bfloat16(expect_array(buffers[0], np.uint16, numel(shape), self.spec))

    def check_parts(self, buffers, params, shape):
        expect_no_params(params, self.spec)
        expect_buffers(buffers, 1, self.spec)
        expect_array(buffers[0], np.uint16, numel(shape), self.spec)  # any bit pattern is valid

    def encoded_nbytes(self, shape):
        return 2 * numel(shape)
