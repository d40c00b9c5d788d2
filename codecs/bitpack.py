"""Packing of k-bit codes (k in 1..16) into bytes, LSB-first.

Code i occupies bits [i*k, (i+1)*k) of the stream; stream bit j is bit (j % 8) of byte
j // 8, and a code's least significant bit comes first. So for 4 bits, byte j holds code
2j in its low nibble and code 2j+1 in its high nibble; for 1 bit this is
``np.packbits(bitorder="little")``. Unused high bits of the last byte are zero.
"""

from __future__ import annotations

import numpy as np

from .wire import WireError

CHUNK = 1 << 16  # codes per step; a multiple of 8, so every chunk ends on a byte boundary


def packed_nbytes(n: int, bits: int) -> int:
    """Bytes that n codes of `bits` bits occupy: ceil(n * bits / 8)."""
    return (n * bits + 7) // 8


def code_dtype(bits: int) -> np.dtype:
    return np.dtype(np.uint8) if bits <= 8 else np.dtype(np.uint16)


def pack_chunk(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack one chunk whose length is a multiple of 8 (or the final chunk)."""
    if bits == 8:
        return codes.astype(np.uint8, copy=False)
    if bits == 16:
        return codes.astype("<u2", copy=False).view(np.uint8)
    if bits == 1:
        return np.packbits(codes.astype(np.uint8, copy=False), bitorder="little")
    if bits == 4:
        if codes.size % 2:
            codes = np.append(codes, np.zeros(1, codes.dtype))
        return codes[0::2] | (codes[1::2] << 4)
    if bits == 2:
        pad = -codes.size % 4
        if pad:
            codes = np.append(codes, np.zeros(pad, codes.dtype))
        c = codes.reshape(-1, 4)
        return (c[:, 0] | (c[:, 1] << 2) | (c[:, 2] << 4) | (c[:, 3] << 6)).astype(np.uint8)
    shifts = np.arange(bits, dtype=codes.dtype)
    expanded = ((codes[:, None] >> shifts) & 1).astype(np.uint8)
    return np.packbits(expanded.ravel(), bitorder="little")


def pack_into(codes: np.ndarray, bits: int, out: np.ndarray) -> None:
    """Pack a chunk of codes into the uint8 slice `out` (same layout as pack_chunk)."""
    if bits == 4 and codes.size % 2 == 0:
        np.left_shift(codes[1::2], 4, out=out)
        out |= codes[0::2]
    elif bits == 8:
        out[:] = codes
    else:
        out[:] = pack_chunk(codes, bits)


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack 1-D unsigned codes (each < 2**bits) into a uint8 array of packed_nbytes bytes."""
    n = codes.size
    if n <= CHUNK:
        return np.ascontiguousarray(pack_chunk(codes, bits), dtype=np.uint8)
    out = np.empty(packed_nbytes(n, bits), np.uint8)
    for a in range(0, n, CHUNK):
        b = min(a + CHUNK, n)
        out[a * bits // 8 : (b * bits + 7) // 8] = pack_chunk(codes[a:b], bits)
    return out


def unpack_chunk(buf: np.ndarray, bits: int, n: int) -> np.ndarray:
    if bits == 8:
        return buf[:n]
    if bits == 16:
        return buf[: 2 * n].view("<u2")
    if bits == 4:
        out = np.empty(2 * buf.size, np.uint8)
        np.bitwise_and(buf, 15, out=out[0::2])
        np.right_shift(buf, 4, out=out[1::2])
        return out[:n]
    if bits == 1:
        return np.unpackbits(buf, count=n, bitorder="little")
    dt = code_dtype(bits)
    flat = np.unpackbits(buf, count=n * bits, bitorder="little").reshape(n, bits).astype(dt)
    weights = (np.ones(1, dt) << np.arange(bits, dtype=dt)).astype(dt)
    return (flat * weights).sum(axis=1, dtype=dt)


def check_padding(buf: np.ndarray, bits: int, n: int) -> None:
    """WireError if the unused high bits of the last byte after n codes are not zero."""
    used = (n * bits) % 8
    if used and int(buf[-1]) >> used:
        raise WireError("nonzero padding bits after the last code")


def unpack_codes(buf: np.ndarray, bits: int, n: int) -> np.ndarray:
    """Inverse of pack_codes; WireError if the length is wrong or padding bits are set."""
    if buf.dtype != np.uint8 or buf.ndim != 1:
        raise WireError("packed codes must be a 1-D uint8 buffer")
    need = packed_nbytes(n, bits)
    if buf.size != need:
        raise WireError(f"packed {bits}-bit codes of {n} values need {need} bytes, got {buf.size}")
    check_padding(buf, bits, n)
    dt = code_dtype(bits)
    if n <= CHUNK:
        return np.ascontiguousarray(unpack_chunk(buf, bits, n), dtype=dt)
    out = np.empty(n, dt)
    for a in range(0, n, CHUNK):
        b = min(a + CHUNK, n)
        out[a:b] = unpack_chunk(buf[a * bits // 8 : (b * bits + 7) // 8], bits, b - a)
    return out
