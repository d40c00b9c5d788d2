"""Encodings of a sparse support: k sorted distinct indices out of n.

- ``bitmap``: n bits, bit i set when index i is kept, LSB-first; ceil(n / 8) bytes.
- ``index``: the indices as the smallest unsigned integer type holding n - 1
  (uint8 / uint16 / uint32 / uint64); k * width bytes.
- ``golomb``: Golomb-Rice coding of the gaps g_i = idx_i - idx_{i-1} - 1 (idx_{-1} = -1)
  with parameter b (Rice 1979; Golomb 1966): q_i = g_i >> b in unary (q_i one-bits then a
  zero-bit) in one bit stream, and the low b bits of each gap in a second stream of
  b-bit codes; both LSB-first. Size ceil((k + sum q_i) / 8) + ceil(k * b / 8) bytes;
  b is the value in 0..bit_length(max gap) that minimizes this exact size. Two streams
  instead of interleaving cost at most one byte and make decoding a vector operation.
- ``auto``: whichever of the three is smallest for this very support (ties: index,
  bitmap, golomb in that order).
"""

from __future__ import annotations

import numpy as np

from .base import expect_array, expect_buffers, expect_param
from .bitpack import pack_codes, packed_nbytes, unpack_codes
from .wire import WireError

MASK_KINDS = ("auto", "bitmap", "index", "golomb")
_CONCRETE = ("index", "bitmap", "golomb")  # auto's tie-break order


def index_dtype(n: int) -> np.dtype:
    """Smallest unsigned dtype that holds every index of a tensor of n values."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if n <= np.iinfo(dt).max + 1:
            return np.dtype(dt)
    return np.dtype(np.uint64)


def bitmap_nbytes(n: int) -> int:
    return (n + 7) // 8


def index_nbytes(n: int, k: int) -> int:
    return k * index_dtype(n).itemsize


def _gaps(idx: np.ndarray) -> np.ndarray:
    gaps = np.diff(idx, prepend=-1)
    gaps -= 1
    return gaps


def rice_parameter(gaps: np.ndarray) -> tuple[int, int]:
    """(b, exact bytes) of the Golomb-Rice code with the b that minimizes the size."""
    k = gaps.size
    if k == 0:
        return 0, 0
    top = int(gaps.max()).bit_length()
    best = None
    for b in range(top + 1):
        size = (k + int((gaps >> b).sum()) + 7) // 8 + packed_nbytes(k, b)
        if best is None or size < best[1]:
            best = (b, size)
    return best


def golomb_nbytes(idx: np.ndarray) -> int:
    return rice_parameter(_gaps(np.asarray(idx, np.int64)))[1]


def mask_nbytes(kind: str, idx: np.ndarray, n: int) -> int:
    """Exact bytes of the support idx (sorted, distinct) under `kind` (auto: the smallest)."""
    if kind == "bitmap":
        return bitmap_nbytes(n)
    if kind == "index":
        return index_nbytes(n, idx.size)
    if kind == "golomb":
        return golomb_nbytes(idx)
    return min(mask_nbytes(c, idx, n) for c in _CONCRETE)


def choose_mask(kind: str, idx: np.ndarray, n: int) -> str:
    if kind != "auto":
        return kind
    sizes = [mask_nbytes(c, idx, n) for c in _CONCRETE]
    return _CONCRETE[sizes.index(min(sizes))]


def encode_mask(kind: str, idx: np.ndarray, n: int) -> tuple[str, tuple, dict]:
    """(chosen kind, buffers, params) for sorted distinct int64 indices idx in [0, n)."""
    kind = choose_mask(kind, idx, n)
    if kind == "bitmap":
        bits = np.zeros(n, np.uint8)
        bits[idx] = 1
        return kind, (np.packbits(bits, bitorder="little"),), {}
    if kind == "index":
        return kind, (idx.astype(index_dtype(n)),), {}
    gaps = _gaps(idx)
    b, _ = rice_parameter(gaps)
    q = gaps >> b
    total = idx.size + int(q.sum())
    ends = np.cumsum(q + 1) - 1  # position of each terminating zero
    starts = ends - q
    # q one-bits before each terminator: mark run starts/ends and integrate
    marks = np.zeros(total + 1, np.int8)
    runs = q > 0
    marks[starts[runs]] = 1
    marks[ends[runs]] = -1
    unary = np.cumsum(marks[:-1], dtype=np.int8).view(np.uint8)
    low = (gaps & ((1 << b) - 1)).astype(np.uint16 if b <= 16 else np.uint64)
    rem = _pack_wide(low, b)
    return kind, (np.packbits(unary, bitorder="little"), rem), {"rice": b}


def _pack_wide(values: np.ndarray, b: int) -> np.ndarray:
    """Pack b-bit values (b up to 64), LSB-first."""
    if b <= 16:
        return pack_codes(values.astype(np.uint16 if b > 8 else np.uint8), b)
    bits = ((values.astype(np.uint64)[:, None] >> np.arange(b, dtype=np.uint64)) & 1).astype(
        np.uint8
    )
    return np.packbits(bits.ravel(), bitorder="little")


def _unpack_wide(buf: np.ndarray, b: int, k: int) -> np.ndarray:
    if b <= 16:
        return unpack_codes(buf, b, k).astype(np.int64)
    if buf.size != packed_nbytes(k, b):
        raise WireError("golomb remainder stream has the wrong length")
    used = (k * b) % 8
    if used and int(buf[-1]) >> used:
        raise WireError("nonzero padding bits in golomb remainders")
    bits = np.unpackbits(buf, count=k * b, bitorder="little").reshape(k, b).astype(np.int64)
    return (bits << np.arange(b, dtype=np.int64)).sum(axis=1)


def mask_buffer_count(kind: str) -> int:
    return 2 if kind == "golomb" else 1


def decode_mask(kind: str, buffers: tuple, params: dict, n: int, k: int) -> np.ndarray:
    """Sorted distinct int64 indices in [0, n), exactly k of them; WireError otherwise."""
    if kind not in _CONCRETE:
        raise WireError(f"unknown mask encoding {kind!r}")
    expect_buffers(buffers, mask_buffer_count(kind), f"{kind} mask")
    if kind == "bitmap":
        packed = expect_array(buffers[0], np.uint8, bitmap_nbytes(n), "bitmap mask")
        idx = np.flatnonzero(unpack_codes(packed, 1, n))
        if idx.size != k:
            raise WireError(f"bitmap mask has {idx.size} bits set, expected {k}")
        return idx.astype(np.int64)
    if kind == "index":
        idx = expect_array(buffers[0], index_dtype(n), k, "index mask").astype(np.int64)
        if k and (int(idx[-1]) >= n or (k > 1 and (np.diff(idx) <= 0).any()) or idx[0] < 0):
            raise WireError("index mask is not sorted, distinct and below the tensor size")
        return idx
    b = expect_param(params, "rice", 0, max(n, 1).bit_length(), "golomb mask")
    unary = expect_array(buffers[0], np.uint8, None, "golomb unary stream")
    # sum(g >> b) <= (sum g) >> b = (n - k) >> b bounds the stream before unpacking it
    if unary.size > (k + ((n - k) >> b) + 7) // 8:
        raise WireError("golomb unary stream longer than any valid one")
    zeros = np.flatnonzero(np.unpackbits(unary, bitorder="little") == 0)
    if zeros.size < k:
        raise WireError("golomb unary stream ends early")
    last = int(zeros[k - 1]) + 1 if k else 0
    if unary.size != (last + 7) // 8:
        raise WireError("golomb unary stream has the wrong length")
    if last % 8 and int(unary[-1]) >> (last % 8):
        raise WireError("nonzero padding bits in golomb unary stream")
    rem = expect_array(buffers[1], np.uint8, packed_nbytes(k, b), "golomb remainders")
    low = _unpack_wide(rem, b, k)
    q = np.diff(zeros[:k], prepend=-1) - 1
    if k and int(q.max()) > (n >> b):
        raise WireError("golomb gap beyond the tensor size")
    gaps = (q << b) + low
    idx = np.cumsum(gaps + 1) - 1
    if k and int(idx[-1]) >= n:
        raise WireError("golomb index beyond the tensor size")
    return idx
