"""Quantities written the way people think: "20Mbit/s", "50ms", "2GFLOP/s", "1.5MB".

Every parser returns plain SI floats (bit/s, seconds, FLOP/s, bytes). Decimal prefixes
(k, M, G, T) are powers of 1000; binary ones (Ki, Mi, Gi) powers of 1024. A bare number
is taken in the base unit.
"""

from __future__ import annotations

import re

_PREFIX = {
    "": 1.0,
    "k": 1e3,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 1024.0,
    "Mi": 1024.0**2,
    "Gi": 1024.0**3,
    "Ti": 1024.0**4,
}

_NUM = r"(?P<num>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
_PFX = r"(?P<pfx>Ki|Mi|Gi|Ti|k|K|M|G|T)?"


def _parse(value: object, units: dict[str, float], what: str, examples: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a {what} such as {examples}, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a {what} such as {examples}, got {value!r}")
    text = value.strip().replace(" ", "")
    unit_alt = "|".join(sorted((re.escape(u) for u in units), key=len, reverse=True))
    m = re.fullmatch(_NUM + _PFX + f"(?P<unit>{unit_alt})?", text)
    if m is None or (m.group("pfx") and not m.group("unit")):
        raise ValueError(f"cannot read {value!r} as a {what} (examples: {examples})")
    scale = _PREFIX[m.group("pfx") or ""] * units[m.group("unit") or ""]
    return float(m.group("num")) * scale


_RATE_UNITS = {"": 1.0, "bit/s": 1.0, "bps": 1.0, "b/s": 1.0, "B/s": 8.0, "Bps": 8.0}
_BYTE_UNITS = {"": 1.0, "B": 1.0, "byte": 1.0, "bytes": 1.0, "bit": 1 / 8, "b": 1 / 8}
_FLOPS_UNITS = {"": 1.0, "FLOP/s": 1.0, "FLOPS": 1.0, "flop/s": 1.0}
_FLOP_UNITS = {"": 1.0, "FLOP": 1.0, "flop": 1.0}


def parse_rate(value: object) -> float:
    """A data rate in bit/s: "20Mbit/s", "1.5MB/s" (bytes), "100kbps", 2e6."""
    return _parse(value, _RATE_UNITS, "data rate", '"20Mbit/s", "2.5MB/s", 1e6')


def parse_bytes(value: object) -> float:
    """A size in bytes: "1.5MB", "512KiB", "800kbit", 1024."""
    return _parse(value, _BYTE_UNITS, "size", '"1.5MB", "512KiB", 1024')


def parse_flops(value: object) -> float:
    """A compute speed in FLOP/s: "2GFLOP/s", "500MFLOPS", 1e9."""
    return _parse(value, _FLOPS_UNITS, "compute speed", '"2GFLOP/s", 1e9')


def parse_flop(value: object) -> float:
    """An amount of work in FLOP: "3GFLOP", 1e9."""
    return _parse(value, _FLOP_UNITS, "FLOP count", '"3GFLOP", 1e9')


def parse_duration(value: object) -> float:
    """A duration in seconds: "50ms", "2s", "1.5min", "1h", "250us", 0.05."""
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        m = re.fullmatch(_NUM + r"(?P<unit>ns|us|µs|ms|s|sec|min|m|h)?", text)
        if m is None:
            raise ValueError(
                f'cannot read {value!r} as a duration (examples: "50ms", "2s", "1.5min")'
            )
        scale = {
            None: 1.0,
            "ns": 1e-9,
            "us": 1e-6,
            "µs": 1e-6,
            "ms": 1e-3,
            "s": 1.0,
            "sec": 1.0,
            "m": 60.0,
            "min": 60.0,
            "h": 3600.0,
        }[m.group("unit")]
        return float(m.group("num")) * scale
    return _parse(value, {"": 1.0}, "duration", '"50ms", "2s", 0.05')
