"""The Codec interface every tensor codec implements, and record validation helpers.

A codec turns a float32 array into a TensorRecord (buffers + small params) and back.
Concrete codecs implement three things on flat data, so that they compose (a sparsifier
hands its k selected values to any dense codec):

- ``encode_parts(x, rng) -> (buffers, params)`` for a float32 array x (any shape);
- ``decode_parts(buffers, params, shape) -> flat float32`` validating untrusted input;
- ``encoded_nbytes(shape)`` the exact payload size (fixed-size codecs).
"""

from __future__ import annotations

import abc
import math
from typing import Any

import numpy as np

from .wire import TensorRecord, WireError, check_shape, is_int, short_repr


class Codec(abc.ABC):
    spec: str = ""  # canonical spec string
    lossless: bool = False
    fixed_size: bool = True  # encoded size depends only on the shape

    @property
    def wire_spec(self) -> str:
        """The spec written into records (what the receiver needs to decode)."""
        return self.spec

    # ---- public API -------------------------------------------------------------------
    def encode(
        self,
        name: str,
        x: np.ndarray,
        rng: np.random.Generator,
        state: dict | None = None,
    ) -> tuple[TensorRecord, dict | None]:
        """Encode x; returns the record and the new state (None for stateless codecs)."""
        x = as_float32(x)
        buffers, params = self.encode_parts(x, rng)
        return TensorRecord(name, self.wire_spec, tuple(x.shape), params, buffers), None

    def decode(self, rec: TensorRecord) -> np.ndarray:
        """A fresh float32 array of shape rec.shape; WireError if the record is invalid."""
        shape = self._record_shape(rec)
        return self.decode_parts(tuple(rec.buffers), rec.params, shape).reshape(shape)

    def check(self, rec: TensorRecord) -> None:
        """Raise WireError exactly when `decode(rec)` would, without keeping its output
        (receivers that validate before they accept, then decode lazily later)."""
        self.check_parts(tuple(rec.buffers), rec.params, self._record_shape(rec))

    def _record_shape(self, rec: TensorRecord) -> tuple[int, ...]:
        """The record's checked shape, after checking it is a record of this codec."""
        if rec.codec != self.wire_spec:
            raise WireError(
                f"{rec.name}: record codec {short_repr(rec.codec)} is not {self.wire_spec!r}"
            )
        shape = check_shape(rec.shape)
        if not isinstance(rec.params, dict) or not isinstance(rec.buffers, tuple | list):
            raise WireError(f"{rec.name}: malformed record")
        return shape

    def check_parts(self, buffers: tuple, params: dict, shape: tuple[int, ...]) -> None:
        """Validate a record's parts; by default by decoding them (codecs whose values are
        plain floats override it to skip the conversion)."""
        self.decode_parts(buffers, params, shape)

    @abc.abstractmethod
    def encoded_nbytes(self, shape: tuple[int, ...]) -> int:
        """Exact payload bytes (sum of buffer lengths) for a tensor of this shape."""

    def encoded_nbytes_of(
        self,
        x: np.ndarray,
        rng: np.random.Generator | None = None,
        state: dict | None = None,
    ) -> int:
        """Exact payload bytes for this very input (and rng/state, for data-dependent codecs)."""
        if self.fixed_size:
            return self.encoded_nbytes(tuple(np.shape(x)))
        rng = rng if rng is not None else np.random.default_rng(0)
        rec, _ = self.encode("x", x, rng, state)
        return record_nbytes(rec)

    # ---- for implementations and composition ------------------------------------------
    @abc.abstractmethod
    def encode_parts(self, x: np.ndarray, rng: np.random.Generator) -> tuple[tuple, dict]:
        """(buffers, params) of x's encoding."""

    @abc.abstractmethod
    def decode_parts(self, buffers: tuple, params: dict, shape: tuple[int, ...]) -> np.ndarray:
        """The flat float32 values of a record's buffers and params."""

    def encode_feedback(self, name: str, acc: np.ndarray, rng: np.random.Generator) -> TensorRecord:
        """Encode acc, then overwrite acc (owned by the caller) with acc - decode(record).

        Error feedback uses this; codecs override it when the residual is cheaper to form
        than a full decode (sparsifiers touch only the k sent positions).
        """
        buffers, params = self.encode_parts(acc, rng)
        rec = TensorRecord(name, self.wire_spec, tuple(acc.shape), params, buffers)
        acc -= self.decode_parts(buffers, params, tuple(acc.shape)).reshape(acc.shape)
        return rec

    def __repr__(self) -> str:
        return f"<codec {self.spec}>"


def as_float32(x: Any) -> np.ndarray:
    """x as a C-contiguous float32 array (a view when it already is one)."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"cannot encode an array of dtype {arr.dtype}")
    return np.asarray(arr, dtype=np.float32, order="C")


def numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def record_nbytes(rec: TensorRecord) -> int:
    """Sum of the record's buffer lengths (its payload bytes on the wire)."""
    return sum(memoryview(b).nbytes for b in rec.buffers)


def expect_buffers(buffers: tuple, count: int, what: str) -> None:
    if len(buffers) != count:
        raise WireError(f"{what}: expected {count} buffers, got {len(buffers)}")


def expect_array(buf: Any, dtype: str | np.dtype, size: int | None, what: str) -> np.ndarray:
    """buf as a 1-D array of exactly `size` (None: any number of) items of `dtype`.

    Bytes are taken as uint8."""
    dt = np.dtype(dtype).newbyteorder("<")
    if isinstance(buf, bytes | bytearray | memoryview):
        if dt != np.uint8:
            raise WireError(f"{what}: expected a {dt.name} buffer, got bytes")
        buf = np.frombuffer(buf, np.uint8)
    if not isinstance(buf, np.ndarray) or buf.ndim != 1:
        raise WireError(f"{what}: buffer is not a 1-D array")
    if buf.dtype != dt:
        raise WireError(f"{what}: expected dtype {dt.name}, got {buf.dtype.name}")
    if size is not None and buf.size != size:
        raise WireError(f"{what}: expected {size} values, got {buf.size}")
    return buf


def expect_param(params: dict, key: str, lo: int, hi: int, what: str) -> int:
    v = params.get(key)
    if not is_int(v) or not lo <= v <= hi:
        raise WireError(f"{what}: param {key!r}={short_repr(v)} not an integer in [{lo}, {hi}]")
    return v


def expect_no_params(params: dict, what: str) -> None:
    """Dense codecs have no params in wire version 1: the map must be empty."""
    if params:
        names = ", ".join(sorted(map(short_repr, params)))
        raise WireError(f"{what}: unexpected params {short_repr(names)}")


def expect_scales(arr: np.ndarray, what: str, nonnegative: bool = False) -> None:
    """Every value finite; with nonnegative, also no sign bit (no negative value, no -0.0:
    the encoders make scales from max - min, a norm or a mean of |x|, all +0.0 or above).

    One or two vectorized passes over the (small) scales array."""
    if not arr.size:
        return
    if not np.isfinite(arr).all():
        raise WireError(f"{what}: non-finite scale")
    if nonnegative and np.signbit(arr).any():
        raise WireError(f"{what}: negative scale")
