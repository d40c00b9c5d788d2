"""Codec specs: parsing, composition, and encoding/decoding a whole set of tensors.

Grammar (docs/codecs.md has the full reference)::

    spec    := "ef(" chain ")" | chain
    chain   := sparse "+" dense | sparse | dense
    sparse  := ("topk" | "randk") ":" K [":mask=" ("auto"|"bitmap"|"index"|"golomb")]
    dense   := "fp32" | "fp16" | "bf16"
             | "q" BITS [":per=" ("tensor"|"channel") | ":bucket=" INT] [":stochastic"]
             | "qsgd" [":s=" INT] [":bucket=" INT]
             | "sign" [":per=" ("tensor"|"channel") | ":bucket=" INT]
    K       := a fraction with a "." or exponent ("0.01", "1e-3"), or a count ("100")

Options after a name may come in any order; the canonical spec (``Codec.spec``) lists
them in the order above and leaves defaults out.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import numpy as np

from .base import Codec
from .error_feedback import ErrorFeedback
from .floats import BFloat16Codec, Float16Codec, Float32Codec
from .qsgd import QSGDCodec
from .quantize import QuantizeCodec, SignCodec
from .sparsify import SparseCodec
from .wire import TensorRecord, WireError

__all__ = ["Codec", "parse_codec", "encode_tensors", "decode_tensors", "codec_for_record"]

MAX_SPEC_LEN = 256
DEFAULT_QSGD_LEVELS = 16
_FLOATS = {"fp32": Float32Codec, "fp16": Float16Codec, "bf16": BFloat16Codec}
_INT = re.compile(r"[1-9][0-9]{0,9}")


class _SpecError(ValueError):
    pass


def _options(stage: str) -> tuple[str, list[str], dict[str, str], set[str]]:
    """name, positional values, key=value options, flags of one ':'-separated stage."""
    name, *rest = stage.split(":")
    positional, keyed, flags = [], {}, set()
    for opt in rest:
        if not opt:
            raise _SpecError(f"empty option in {stage!r}")
        if "=" in opt:
            key, _, value = opt.partition("=")
            if key in keyed:
                raise _SpecError(f"option {key!r} given twice")
            keyed[key] = value
        elif opt in flags:
            raise _SpecError(f"option {opt!r} given twice")
        elif re.fullmatch(r"[0-9.eE+-]+", opt):
            positional.append(opt)
        else:
            flags.add(opt)
    return name, positional, keyed, flags


def _int(value: str, what: str) -> int:
    if not _INT.fullmatch(value):
        raise _SpecError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _k(value: str) -> float | int:
    if _INT.fullmatch(value):
        return int(value)
    try:
        k = float(value)
    except ValueError:
        raise _SpecError(
            f"k must be a fraction like 0.01 or a count like 100, got {value!r}"
        ) from None
    if not 0.0 < k <= 1.0:
        raise _SpecError(f"k as a fraction must be in (0, 1], got {value}")
    return k


def _reject(name: str, positional, keyed, flags, allowed_keys=(), allowed_flags=()) -> None:
    extra = [*positional, *(set(keyed) - set(allowed_keys)), *(flags - set(allowed_flags))]
    if extra:
        raise _SpecError(f"unknown option {extra[0]!r} for {name!r}")


def _grouping(keyed: dict[str, str]) -> tuple[str, int | None]:
    if "bucket" in keyed:
        if keyed.get("per", "bucket") != "bucket":
            raise _SpecError("give either per= or bucket=, not both")
        return "bucket", _int(keyed["bucket"], "bucket")
    per = keyed.get("per", "tensor")
    if per not in ("tensor", "channel"):
        raise _SpecError(f"per must be tensor or channel (or use bucket=B), got {per!r}")
    return per, None


def _dense(stage: str) -> Codec:
    name, positional, keyed, flags = _options(stage)
    if name in _FLOATS:
        _reject(name, positional, keyed, flags)
        return _FLOATS[name]()
    if re.fullmatch(r"q[0-9]+", name):
        bits = int(name[1:])
        if not 1 <= bits <= 16:
            raise _SpecError(f"quantizer bits must be 1..16, got {bits}")
        _reject(name, positional, keyed, flags, ("per", "bucket"), ("stochastic",))
        per, bucket = _grouping(keyed)
        return QuantizeCodec(bits, per, bucket, stochastic="stochastic" in flags)
    if name == "qsgd":
        _reject(name, positional, keyed, flags, ("s", "bucket"))
        levels = _int(keyed["s"], "s") if "s" in keyed else DEFAULT_QSGD_LEVELS
        per, bucket = _grouping({k: v for k, v in keyed.items() if k == "bucket"})
        return QSGDCodec(levels, per, bucket)
    if name == "sign":
        _reject(name, positional, keyed, flags, ("per", "bucket"))
        return SignCodec(*_grouping(keyed))
    if name in ("topk", "randk"):
        raise _SpecError(f"{name} must come first, before '+'")
    raise _SpecError(f"unknown codec {name!r}")


def _sparse(stage: str, values: Codec | None) -> Codec:
    name, positional, keyed, flags = _options(stage)
    if "k" in keyed:
        positional = [*positional, keyed.pop("k")]
    if len(positional) != 1:
        raise _SpecError(f"{name} needs exactly one k, e.g. {name}:0.01")
    _reject(name, [], keyed, flags, ("mask",))
    return SparseCodec(name, _k(positional[0]), keyed.get("mask", "auto"), values)


def _chain(text: str) -> Codec:
    parts = text.split("+")
    head = parts[0].split(":")[0]
    if head in ("topk", "randk"):
        if len(parts) > 2:
            raise _SpecError("a sparsifier takes one value codec after '+'")
        return _sparse(parts[0], _dense(parts[1]) if len(parts) == 2 else None)
    if len(parts) > 1:
        raise _SpecError("only a sparsifier (topk/randk) can be followed by '+'")
    return _dense(parts[0])


def parse_codec(spec: str) -> Codec:
    """A codec from its spec; ValueError with a one-line message for a bad spec."""
    if not isinstance(spec, str):
        raise ValueError(f"codec spec must be a string, got {type(spec).__name__}")
    text = spec.strip().lower()
    try:
        if not text or len(text) > MAX_SPEC_LEN or re.search(r"\s", text):
            raise _SpecError("empty, too long or contains whitespace")
        m = re.fullmatch(r"ef\((.*)\)", text)
        if m:
            return ErrorFeedback(_chain(m.group(1)))
        if "(" in text or ")" in text:
            raise _SpecError("only ef(...) takes parentheses")
        return _chain(text)
    except ValueError as exc:
        raise ValueError(f"bad codec spec {spec!r}: {exc}") from None


@functools.lru_cache(maxsize=256)
def _wire_codec(spec: str) -> Codec:
    codec = parse_codec(spec)
    if isinstance(codec, ErrorFeedback) or codec.wire_spec != spec:
        raise ValueError(f"{spec!r} is not a canonical wire codec")
    return codec


def codec_for_record(rec: TensorRecord) -> Codec:
    """The codec that decodes rec (its `codec` field must be a canonical spec)."""
    if not isinstance(rec.codec, str):
        raise WireError("record codec is not a string")
    try:
        return _wire_codec(rec.codec)
    except ValueError as exc:
        raise WireError(f"{rec.name}: {exc}") from None


def encode_tensors(
    tensors: dict[str, np.ndarray],
    codec: Codec | Callable[[str, np.ndarray], Codec],
    rng: np.random.Generator,
    state: dict[str, dict] | None = None,
) -> tuple[list[TensorRecord], dict[str, dict]]:
    """Encode every tensor in sorted name order; returns records and the new per-name state.

    `codec` is one codec for every tensor, or a function (name, tensor) -> codec for methods
    that choose per tensor (FedDQ's bits, OQFL's integer grid)."""
    records, new_state = [], {}
    for name in sorted(tensors):
        c = (
            codec(name, tensors[name])
            if callable(codec) and not isinstance(codec, Codec)
            else codec
        )
        rec, st = c.encode(name, tensors[name], rng, (state or {}).get(name))
        records.append(rec)
        if st is not None:
            new_state[name] = st
    return records, new_state


def check_tensors(records) -> None:
    """WireError exactly when `decode_tensors(records)` would fail, keeping no output."""
    seen: set[str] = set()
    for rec in records:
        if rec.name in seen:
            raise WireError(f"duplicate tensor {rec.name!r}")
        seen.add(rec.name)
        codec_for_record(rec).check(rec)


def decode_tensors(records) -> dict[str, np.ndarray]:
    """Decode records (from unpack_message) into {name: float32 array}; WireError if invalid."""
    out: dict[str, np.ndarray] = {}
    for rec in records:
        if rec.name in out:
            raise WireError(f"duplicate tensor {rec.name!r}")
        out[rec.name] = codec_for_record(rec).decode(rec)
    return out
