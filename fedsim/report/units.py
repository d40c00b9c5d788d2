"""Human-readable bytes, seconds, energy and accuracy for plots and tables (SI: 1 MB = 10^6 B)."""

from __future__ import annotations

_BYTE_UNITS = [(1e9, "GB"), (1e6, "MB"), (1e3, "kB"), (1.0, "B")]
_ENERGY_UNITS = [(1e6, "MJ"), (1e3, "kJ"), (1.0, "J")]


def _pick(largest: float, units: list[tuple[float, str]]) -> tuple[float, str]:
    for div, unit in units:
        if abs(largest) >= div:
            return div, unit
    return units[-1]


def byte_scale(largest: float) -> tuple[float, str]:
    """(divisor, unit) so that `largest` reads as 1 to 1000 of the unit."""
    return _pick(largest, _BYTE_UNITS)


def energy_scale(largest: float) -> tuple[float, str]:
    return _pick(largest, _ENERGY_UNITS)


def time_scale(largest: float) -> tuple[float, str]:
    """Seconds up to 10 minutes, then minutes up to 5 hours, then hours."""
    if abs(largest) >= 5 * 3600:
        return 3600.0, "h"
    if abs(largest) >= 600:
        return 60.0, "min"
    return 1.0, "s"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "–"
    div, unit = byte_scale(n)
    return f"{int(n):,} B" if unit == "B" else f"{n / div:.3g} {unit}"


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "–"
    div, unit = time_scale(s)
    return f"{s / div:.4g} {unit}"


def fmt_energy(j: float | None) -> str:
    if j is None:
        return "–"
    div, unit = energy_scale(j)
    return f"{j / div:.4g} {unit}"


def fmt_pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"
