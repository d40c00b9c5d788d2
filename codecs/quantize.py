"""Uniform k-bit quantization (k in 1..16) and sign compression (1 bit + scale).

Values are split into groups: the whole tensor, each output channel (axis 0, for tensors
of 2 or more dimensions; smaller ones fall back to the whole tensor), or buckets of B
consecutive values in C order (the last bucket may be shorter). Each group keeps its
minimum `lo` and step `(hi - lo) / (2**k - 1)` as float32; a value becomes the code
round((x - lo) / step) (deterministic) or floor((x - lo) / step + u), u ~ U[0, 1)
(stochastic rounding, unbiased: E[decode] = x; Gupta et al. 2015, "Deep learning with
limited numerical precision", eq. 2). Codes are packed LSB-first (bitpack.py).

Work proceeds in chunks of 64 Ki values, so temporaries stay in cache and no float64
copy of the tensor is ever made.
"""

from __future__ import annotations

import numpy as np

from .base import (
    Codec,
    expect_array,
    expect_buffers,
    expect_no_params,
    expect_scales,
    numel,
)
from .bitpack import (
    CHUNK,
    check_padding,
    code_dtype,
    pack_into,
    packed_nbytes,
    unpack_chunk,
    unpack_codes,
)
from .parallel import parts, run_parts
from .wire import WireError

PER_CHOICES = ("tensor", "channel", "bucket")
_TWO16 = np.float32(65536.0)
_INV_TWO16 = np.float32(1.0 / 65536.0)
_DRAWN_CHUNKS = 4  # chunks per part of a stochastic encode over threads (1 MiB of uniforms)
TINY = np.finfo(np.float32).tiny  # 2**-126, the smallest normal float32 and smallest step


def group_layout(shape: tuple[int, ...], per: str, bucket: int | None) -> tuple[int, int]:
    """(number of groups G, group length L): groups are runs of L values, the last may be shorter."""
    n = numel(shape)
    if per == "bucket":
        return -(-n // bucket), bucket
    if per == "channel" and len(shape) >= 2:
        return shape[0], (n // shape[0] if shape[0] else 0)
    return 1, n


def group_reduce(x: np.ndarray, groups: int, length: int, fn) -> np.ndarray:
    """fn(rows, axis=1) for each group of a flat array, as float32 of size G (0 for empty)."""
    out = np.zeros(groups, np.float32)
    n = x.size
    if n == 0 or groups == 0:
        return out
    full = n // length
    if full:
        out[:full] = fn(x[: full * length].reshape(full, length), axis=1)
    if full < groups:
        out[full] = fn(x[full * length :].reshape(1, -1), axis=1)[0]
    return out


def _min_max(x: np.ndarray, groups: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """group_reduce with np.min and np.max, over threads for one big group (min and max are
    exact in any order, so the parts' results combine to the same values)."""
    spans = parts(x.size) if groups == 1 else [(0, x.size)]
    if len(spans) == 1:
        return group_reduce(x, groups, length, np.min), group_reduce(x, groups, length, np.max)
    found: dict[int, tuple[np.float32, np.float32]] = {}

    def work(a: int, b: int) -> None:
        found[a] = (x[a:b].min(), x[a:b].max())

    run_parts(spans, work)
    # np.min/np.max over the parts' results: a NaN in any part propagates, as in one pass
    lo = np.array([np.min([v[0] for v in found.values()])], np.float32)
    hi = np.array([np.max([v[1] for v in found.values()])], np.float32)
    return lo, hi


def per_value(values: np.ndarray, a: int, b: int, length: int):
    """The group value of each element in [a, b): a scalar when there is one group."""
    if values.size == 1:
        return values[0]
    return values[np.arange(a, b) // length]


def _draw_uniforms(rng: np.random.Generator, m: int, levels: int) -> np.ndarray:
    """The random numbers that dither m values: 16-bit integers (four per 64-bit draw of
    the generator) when levels < 128, else float32 uniforms. Drawing the values of several
    chunks at once gives the same numbers as drawing them chunk by chunk (chunks are whole
    multiples of 4 values, and the generator's stream does not depend on the call sizes)."""
    if _fixed_point(levels):
        return rng.bit_generator.random_raw(-(-m // 4)).view(np.uint16)[:m]
    return rng.random(m, dtype=np.float32)


def _can_jump(rng: np.random.Generator) -> bool:
    """Whether the generator can jump ahead by n 64-bit draws: PCG64 and PCG64DXSM
    (Philox's advance counts 4-draw blocks and it buffers them; MT19937 cannot jump)."""
    return type(rng.bit_generator) in (np.random.PCG64, np.random.PCG64DXSM)


def _jumped(rng: np.random.Generator, draws: int) -> np.random.Generator:
    """A copy of rng moved ahead as if `draws` 64-bit raw draws had been made."""
    bg = type(rng.bit_generator)()
    bg.state = rng.bit_generator.state
    bg.advance(draws)
    return np.random.Generator(bg)


def _advance_keeping_buffer(rng: np.random.Generator, draws: int) -> None:
    """Move rng ahead by `draws` raw draws, as random_raw(draws) does: raw draws leave the
    generator's buffered 32-bit half alone, which advance() would clear."""
    state = rng.bit_generator.state
    rng.bit_generator.advance(draws)
    moved = rng.bit_generator.state
    for key in ("has_uint32", "uinteger"):
        if key in state:
            moved[key] = state[key]
    rng.bit_generator.state = moved


def _dither_codes(t: np.ndarray, r: np.ndarray, levels: int, dtype) -> np.ndarray:
    """floor(t + u), u ~ U[0, 1), clipped to levels; t holds (x - lo) / step >= 0, already
    multiplied by 2**16 when levels < 128 (see _fixed_point); r from _draw_uniforms.

    For levels < 128 the uniform comes from 16 random bits added in fixed point
    (t * 2**16 stays below 2**23, exact in float32): unbiased to within 2**-16 steps,
    and four values per 64-bit draw of the generator.
    """
    if _fixed_point(levels):
        np.add(t, r, out=t, casting="unsafe")
        t *= _INV_TWO16
    else:
        t += r
    codes = t.astype(dtype)
    np.minimum(codes, levels, out=codes)
    return codes


def _fixed_point(levels: int) -> bool:
    return levels < 128


def quantize_uniform(
    x: np.ndarray,
    bits: int,
    groups: int,
    length: int,
    stochastic: bool,
    rng: np.random.Generator | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Flat float32 x -> (packed codes uint8, scales float32 [lo0, step0, lo1, step1, ...])."""
    n = x.size
    levels = (1 << bits) - 1
    lo, hi = _min_max(x, groups, length)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ValueError("cannot quantize non-finite values")
    span = hi.astype(np.float64) - lo
    with np.errstate(over="ignore"):
        spread = hi - lo
    if not np.isfinite(spread).all():
        raise ValueError("value range exceeds float32")
    step = (span / levels).astype(np.float32)
    # a subnormal step would overflow 1/step; the smallest normal float32 is fine-grained enough
    step = np.where(span > 0, np.maximum(step, TINY), step).astype(np.float32)
    inv = np.divide(1.0, step, out=np.zeros(groups, np.float32), where=step > 0)
    if stochastic and _fixed_point(levels):
        inv *= _TWO16  # exact: a power of two
    # Deterministic rounding: floor((x - lo) / step + 1/2) = floor((x - (lo - step/2)) / step),
    # one operation fewer. lo - step/2 rounds to float32 with an error of |lo| * 2**-24,
    # negligible against the step when |lo| <= 1024 steps (else keep the exact form).
    half = 0.5 * step.astype(np.float64)
    shifted = not stochastic and bool((np.abs(lo) <= 1024 * step).all())
    origin = (lo - half).astype(np.float32) if shifted else lo
    with np.errstate(over="ignore"):
        reach = hi - origin  # the largest x - origin below
        top = np.float32(levels) * step + lo  # the largest value the decoder computes
    if not (np.isfinite(reach).all() and np.isfinite(top).all()):
        # within about a step of the float32 limit: x - origin would overflow to inf (and
        # give a wrong code), or the decoder would, and check_quantizer_scales refuses it
        raise ValueError("value range too close to the float32 limit")
    dtype = code_dtype(bits)
    out = np.empty(packed_nbytes(n, bits), np.uint8)

    def work(start: int, end: int, uniforms: np.ndarray | None = None, rng=rng) -> None:
        buf = np.empty(min(end - start, CHUNK), np.float32)
        cbuf = np.empty(min(end - start, CHUNK), dtype)
        for a in range(start, end, CHUNK):
            b = min(a + CHUNK, end)
            t = buf[: b - a]
            np.subtract(x[a:b], per_value(origin, a, b, length), out=t)
            t *= per_value(inv, a, b, length)
            if stochastic:  # drawn here, chunk by chunk, when the part was not drawn ahead
                r = (
                    _draw_uniforms(rng, b - a, levels)
                    if uniforms is None
                    else uniforms[a - start : b - start]
                )
                codes = _dither_codes(t, r, levels, dtype)
            else:
                if not shifted:
                    t += 0.5
                codes = cbuf[: b - a]
                np.copyto(codes, t, casting="unsafe")
            pack_into(codes, bits, out[a * bits // 8 : (b * bits + 7) // 8])

    if not stochastic:
        run_parts(parts(n), work)  # one part per thread
    elif len(spans := parts(n)) > 1 and _fixed_point(levels) and _can_jump(rng):
        # one part per thread, each drawing from its own copy of the generator jumped to
        # where the one-thread loop would be at the part's start (4 values per 64-bit draw)
        gens = {a: _jumped(rng, a // 4) for a, _ in spans}
        run_parts(spans, lambda a, b: work(a, b, rng=gens[a]))
        _advance_keeping_buffer(rng, -(-n // 4))
    else:  # small parts, their random numbers drawn in order here while threads compute
        spans = parts(n, _DRAWN_CHUNKS)
        draw = (lambda a, b: _draw_uniforms(rng, b - a, levels)) if len(spans) > 1 else None
        run_parts(spans, work, draw)
    scales = np.empty(2 * groups, np.float32)
    scales[0::2] = lo
    scales[1::2] = step
    return out, scales


def dequantize_uniform(
    packed: np.ndarray, scales: np.ndarray, bits: int, n: int, groups: int, length: int
) -> np.ndarray:
    """Inverse of quantize_uniform, validated: padding bits, and the scales quantize_uniform
    can produce (check_quantizer_scales); sizes are the caller's."""
    lo = scales[0::2]
    step = scales[1::2]
    check_quantizer_scales(lo, step, (1 << bits) - 1)
    check_padding(packed, bits, n)
    if n and not step.all():
        _check_constant_groups(packed, step == 0, bits, n, length)
    out = np.empty(n, np.float32)
    # finite but huge scales from a peer give +-inf values (errstate set in every part)
    _dequantize_into(out, packed, lo, step, bits, length)
    return out


def check_quantizer_scales(lo: np.ndarray, step: np.ndarray, levels: int) -> None:
    """WireError unless every (lo, step) pair is one quantize_uniform can write: lo finite;
    step +0.0 (a constant group) or a normal float32 >= 2**-126 (never negative, -0.0,
    subnormal or non-finite); and the group's top value lo + levels * step, computed in
    float32 as the decoder does, finite, so that no decoded value overflows.

    A few vectorized passes over the 2G scales: no per-value work."""
    expect_scales(lo, "quantize: lo")
    expect_scales(step, "quantize: step", nonnegative=True)
    if ((step > 0) & (step < TINY)).any():
        raise WireError("quantize: subnormal step")
    with np.errstate(over="ignore", invalid="ignore"):
        top = np.float32(levels) * step + lo
    if not np.isfinite(top).all():
        raise WireError("quantize: lo + (2**bits - 1) * step overflows float32")


def _check_constant_groups(packed, zero_step, bits, n, length) -> None:
    """A group with step 0 was constant, and the encoder wrote code 0 for all its values."""
    if zero_step.size == 1:
        bad = packed.any()
    else:
        codes = unpack_codes(packed, bits, n)
        bad = codes[np.repeat(zero_step, length)[:n]].any()
    if bad:
        raise WireError("quantize: nonzero code in a group whose step is 0")


def _dequantize_into(out, packed, lo, step, bits, length) -> None:
    def work(start: int, end: int) -> None:
        nibbles = np.empty(min(end - start, CHUNK) + 1, np.uint8) if bits == 4 else None
        for a in range(start, end, CHUNK):
            b = min(a + CHUNK, end)
            src = packed[a * bits // 8 : (b * bits + 7) // 8]
            if nibbles is not None:
                codes = nibbles[: 2 * src.size]
                np.bitwise_and(src, 15, out=codes[0::2])
                np.right_shift(src, 4, out=codes[1::2])
                codes = codes[: b - a]
            else:
                codes = unpack_chunk(src, bits, b - a)
            o = out[a:b]
            np.copyto(o, codes, casting="unsafe")
            o *= per_value(step, a, b, length)
            o += per_value(lo, a, b, length)

    run_parts(parts(out.size), _quiet(work))


def _quiet(work):
    """work under np.errstate(over="ignore"), which is per thread: set in each part."""

    def run(*args):
        with np.errstate(over="ignore"):
            work(*args)

    return run


class Grouped(Codec):
    """Shared option handling for codecs with per-tensor / per-channel / per-bucket scales."""

    def __init__(self, per: str = "tensor", bucket: int | None = None):
        if per not in PER_CHOICES:
            raise ValueError(f"per must be one of {', '.join(PER_CHOICES)}, got {per!r}")
        if per == "bucket" and (bucket is None or bucket < 1):
            raise ValueError("bucket size must be a positive integer")
        self.per = per
        self.bucket = bucket if per == "bucket" else None

    def _group_spec(self) -> str:
        if self.per == "bucket":
            return f":bucket={self.bucket}"
        return ":per=channel" if self.per == "channel" else ""

    def layout(self, shape: tuple[int, ...]) -> tuple[int, int]:
        return group_layout(shape, self.per, self.bucket)


class QuantizeCodec(Grouped):
    """q<bits>[:per=channel|:bucket=B][:stochastic]"""

    def __init__(
        self, bits: int, per: str = "tensor", bucket: int | None = None, stochastic: bool = False
    ):
        if not 1 <= bits <= 16:
            raise ValueError(f"bits must be in 1..16, got {bits}")
        super().__init__(per, bucket)
        self.bits = bits
        self.stochastic = stochastic
        self.spec = f"q{bits}{self._group_spec()}{':stochastic' if stochastic else ''}"

    def encode_parts(self, x, rng):
        groups, length = self.layout(x.shape)
        packed, scales = quantize_uniform(
            x.reshape(-1), self.bits, groups, length, self.stochastic, rng
        )
        return (packed, scales), {}

    def decode_parts(self, buffers, params, shape):
        expect_no_params(params, self.spec)
        expect_buffers(buffers, 2, self.spec)
        n = numel(shape)
        groups, length = self.layout(shape)
        packed = expect_array(buffers[0], np.uint8, packed_nbytes(n, self.bits), self.spec)
        scales = expect_array(buffers[1], np.float32, 2 * groups, self.spec)
        return dequantize_uniform(packed, scales, self.bits, n, groups, length)

    def encoded_nbytes(self, shape):
        groups, _ = self.layout(shape)
        return packed_nbytes(numel(shape), self.bits) + 8 * groups


class SignCodec(Grouped):
    """sign[:per=channel|:bucket=B]: one bit per value (1 = negative) and the group's mean |x|.

    The scale follows EF-SignSGD (Karimireddy et al. 2019, Algorithm 1: ||x||_1 / n).
    """

    def __init__(self, per: str = "tensor", bucket: int | None = None):
        super().__init__(per, bucket)
        self.spec = f"sign{self._group_spec()}"

    def encode_parts(self, x, rng):
        flat = x.reshape(-1)
        groups, length = self.layout(x.shape)
        if flat.size and not np.isfinite(flat).all():
            raise ValueError("cannot sign-compress non-finite values")
        scale = group_reduce(
            np.abs(flat), groups, length, lambda r, axis: r.mean(axis=axis, dtype=np.float64)
        )
        bits = np.packbits(flat < 0, bitorder="little")
        return (bits, scale), {}

    def decode_parts(self, buffers, params, shape):
        expect_no_params(params, self.spec)
        expect_buffers(buffers, 2, self.spec)
        n = numel(shape)
        groups, length = self.layout(shape)
        packed = expect_array(buffers[0], np.uint8, packed_nbytes(n, 1), self.spec)
        scale = expect_array(buffers[1], np.float32, groups, self.spec)
        # finite, +0.0 or above; a zero scale may come with sign bits set (a group of
        # subnormals whose mean |x| rounds to 0), so codes are not checked against it
        expect_scales(scale, self.spec, nonnegative=True)
        check_padding(packed, 1, n)
        out = np.empty(n, np.float32)
        for a in range(0, n, CHUNK):  # chunks keep the temporaries small
            b = min(a + CHUNK, n)
            neg = np.unpackbits(packed[a // 8 : (b + 7) // 8], count=b - a, bitorder="little")
            o = out[a:b]
            o[:] = per_value(scale, a, b, length)
            np.negative(o, out=o, where=neg.view(bool))
        return out

    def encoded_nbytes(self, shape):
        groups, _ = self.layout(shape)
        return packed_nbytes(numel(shape), 1) + 4 * groups
