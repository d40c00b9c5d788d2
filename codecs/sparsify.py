"""Sparsification: top-k (largest magnitudes) and random-k, with any dense codec for the
k kept values and any mask encoding (masks.py) for their positions.

Top-k: Aji & Heafield 2017 / Lin et al. 2018 (Deep Gradient Compression); random-k:
Stich et al. 2018 ("Sparsified SGD with memory"). Values are sent as they are (no n/k
rescaling); pair either with error feedback.
"""

from __future__ import annotations

import math

import numpy as np

from .base import Codec, expect_param, numel
from .bitpack import CHUNK
from .floats import Float32Codec
from .masks import (
    MASK_KINDS,
    bitmap_nbytes,
    decode_mask,
    encode_mask,
    index_nbytes,
    mask_buffer_count,
)
from .wire import TensorRecord, WireError, short_repr

_SMALL = 1 << 17  # below this, a plain argpartition is as fast as anything
_SAMPLE = 1 << 16
_MASK_KEYS = {"k", "mask"}
_GOLOMB_KEYS = {"k", "mask", "rice"}


def k_for(n: int, k: float | int) -> int:
    """Number of values kept from n: a float is a fraction in (0, 1] (at least 1 value
    when n > 0, rounded to nearest), an int a count (at most n)."""
    if isinstance(k, float):
        return 0 if n == 0 else min(n, max(1, round(k * n)))
    return min(n, k)


def topk_indices(x: np.ndarray, k: int) -> np.ndarray:
    """Sorted int64 positions of the k largest |x| of a flat array (ties broken
    deterministically).

    For large arrays a threshold is read off a strided sample and only the candidates
    at or above it go through argpartition: exact, since every value above the
    threshold is a candidate, and falls back to a full argpartition when the sample
    guessed too high.
    """
    n = x.size
    if k >= n:
        return np.arange(n, dtype=np.int64)
    if k == 0:
        return np.zeros(0, np.int64)
    if n <= _SMALL:
        idx = np.argpartition(np.abs(x), n - k)[n - k :]
        return np.sort(idx).astype(np.int64)
    sample = np.abs(x[:: max(1, n // _SAMPLE)])
    m = sample.size
    expect = k * m / n
    above = min(m, int(1.25 * expect + 4 * math.sqrt(expect) + 8))
    threshold = np.partition(sample, m - above)[m - above]
    parts = []
    absbuf = np.empty(CHUNK, np.float32)
    hit = np.empty(CHUNK, bool)
    for a in range(0, n, CHUNK):
        b = min(a + CHUNK, n)
        t, h = absbuf[: b - a], hit[: b - a]
        np.abs(x[a:b], out=t)
        np.greater_equal(t, threshold, out=h)
        nz = np.flatnonzero(h)
        if nz.size:
            parts.append(nz + a)
    cand = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    if cand.size < k:
        idx = np.argpartition(np.abs(x), n - k)[n - k :]
        return np.sort(idx).astype(np.int64)
    c = cand.size
    sel = cand[np.argpartition(np.abs(x[cand]), c - k)[c - k :]]
    return np.sort(sel).astype(np.int64)


def randk_indices(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted int64 positions of k values drawn uniformly without replacement."""
    if k >= n:
        return np.arange(n, dtype=np.int64)
    return np.sort(rng.choice(n, size=k, replace=False, shuffle=False)).astype(np.int64)


class SparseCodec(Codec):
    """topk:K[:mask=M][+VALUES] and randk:K[:mask=M][+VALUES]"""

    def __init__(
        self, method: str, k: float | int, mask: str = "auto", values: Codec | None = None
    ):
        if method not in ("topk", "randk"):
            raise ValueError(f"unknown sparsifier {method!r}")
        if isinstance(k, float) and not 0.0 < k <= 1.0:
            raise ValueError(f"k as a fraction must be in (0, 1], got {k}")
        if isinstance(k, int) and k < 1:
            raise ValueError(f"k as a count must be >= 1, got {k}")
        if mask not in MASK_KINDS:
            raise ValueError(f"mask must be one of {', '.join(MASK_KINDS)}, got {mask!r}")
        values = values if values is not None else Float32Codec()
        if isinstance(values, SparseCodec):
            raise ValueError("the values of a sparsifier cannot be sparsified again")
        self.method, self.k, self.mask, self.values = method, k, mask, values
        kstr = repr(k) if isinstance(k, float) else str(k)
        mstr = f":mask={mask}" if mask != "auto" else ""
        vstr = "" if values.spec == "fp32" else f"+{values.spec}"
        self.spec = f"{method}:{kstr}{mstr}{vstr}"
        self.fixed_size = mask in ("bitmap", "index") and values.fixed_size

    def _select(self, flat: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        k = k_for(flat.size, self.k)
        if self.method == "topk":
            return topk_indices(flat, k)
        return randk_indices(flat.size, k, rng)

    def _parts(self, flat, idx, vals, rng):
        kind, mbufs, mparams = encode_mask(self.mask, idx, flat.size)
        vbufs, vparams = self.values.encode_parts(vals, rng)
        params = {"k": int(idx.size), "mask": kind, **mparams}
        if vparams:
            params["values"] = vparams
        return mbufs + vbufs, params, vbufs, vparams

    def encode_parts(self, x, rng):
        flat = x.reshape(-1)
        idx = self._select(flat, rng)
        buffers, params, _, _ = self._parts(flat, idx, flat[idx], rng)
        return buffers, params

    def encode_feedback(self, name, acc, rng):
        flat = acc.reshape(-1)
        idx = self._select(flat, rng)
        vals = flat[idx]
        buffers, params, vbufs, vparams = self._parts(flat, idx, vals, rng)
        if self.values.lossless:
            flat[idx] = 0.0
        else:
            flat[idx] = vals - self.values.decode_parts(vbufs, vparams, (idx.size,))
        return TensorRecord(name, self.wire_spec, tuple(acc.shape), params, buffers)

    def decode_parts(self, buffers, params, shape):
        n = numel(shape)
        k = expect_param(params, "k", 0, n, self.spec)
        if k != k_for(n, self.k):
            raise WireError(f"{self.spec}: k={k} but the spec keeps {k_for(n, self.k)} of {n}")
        kind = params.get("mask")
        if not isinstance(kind, str) or kind not in MASK_KINDS or kind == "auto":
            raise WireError(f"{self.spec}: unknown mask encoding {short_repr(kind)}")
        if self.mask != "auto" and kind != self.mask:
            raise WireError(f"{self.spec}: mask encoding {kind!r}, the spec says {self.mask!r}")
        # exactly the keys an encoder writes: rice only with golomb, values only when the
        # value codec has params (none do in wire version 1, so an empty map is refused)
        allowed = _GOLOMB_KEYS if kind == "golomb" else _MASK_KEYS
        keys = set(params) - {"values"}
        if keys != allowed:
            got = short_repr(sorted(map(short_repr, keys)))
            raise WireError(
                f"{self.spec}: params {got} with mask {kind!r}, expected {sorted(allowed)} "
                "(and values only when nonempty)"
            )
        vparams = params.get("values", {})
        if "values" in params and (not isinstance(vparams, dict) or not vparams):
            raise WireError(f"{self.spec}: values params must be a nonempty map when present")
        nm = mask_buffer_count(kind)
        if len(buffers) < nm:
            raise WireError(f"{self.spec}: missing mask buffers")
        idx = decode_mask(kind, buffers[:nm], params, n, k)
        vals = self.values.decode_parts(buffers[nm:], vparams, (k,))
        out = np.zeros(n, np.float32)
        out[idx] = vals
        return out

    def encoded_nbytes(self, shape):
        if not self.fixed_size:
            raise ValueError(
                f"the size of {self.spec} depends on the data; use encoded_nbytes_of(x)"
            )
        n = numel(shape)
        k = k_for(n, self.k)
        mask = bitmap_nbytes(n) if self.mask == "bitmap" else index_nbytes(n, k)
        return mask + self.values.encoded_nbytes((k,))
