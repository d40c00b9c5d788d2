"""``fedsim validate --show``: the resolved scenario as TOML, each quantity with its unit.

The values are the SI floats the run uses (bit/s, seconds, FLOP/s, bytes), exactly as the
run directory's scenario.toml holds them; a comment after each says what it is in the
units people write, so ``"100MB/s"`` shows as ``800000000.0  # 800 Mbit/s (100 MB/s)``.
"""

from __future__ import annotations

import re
from typing import Any

from fedsim.scenario.load import dump_scenario
from fedsim.scenario.reference import keys


def unit_kinds() -> dict[str, str]:
    """Dotted key (lists as ``name[]``) -> "rate" | "duration" | "flops" | "size"."""
    kinds = {}
    for key, typ, *_ in keys():
        for kind, prefix in (
            ("rate", "rate"),
            ("duration", "duration"),
            ("flops", "FLOP/s"),
            ("size", "size"),
        ):
            if typ.startswith(prefix):
                kinds[key] = kind
    return kinds


def show_scenario(scenario: Any) -> str:
    """dump_scenario(scenario) with a unit comment on every quantity."""
    kinds = unit_kinds()
    table = array = ""
    out = []
    for line in dump_scenario(scenario).splitlines():
        header = re.fullmatch(r"\s*(\[\[?)([^\]]+)\]\]?\s*", line)
        if header:
            table = header.group(2).strip() + ("[]" if header.group(1) == "[[" else "")
            out.append(line)
            continue
        opens = re.fullmatch(r"([A-Za-z0-9_-]+) = \[", line)
        if opens:  # an array of inline tables follows, e.g. network.devices
            array = f"{table}.{opens.group(1)}[]" if table else f"{opens.group(1)}[]"
        elif line.lstrip().startswith("{") and array:
            notes = [
                f"{k} {describe(kinds[f'{array}.{k}'], float(v))}"
                for k, v in re.findall(r"([A-Za-z0-9_-]+) = ([-+0-9.eE]+)\b", line)
                if f"{array}.{k}" in kinds
            ]
            out.append(f"{line}  # {', '.join(notes)}" if notes else line)
            continue
        m = re.fullmatch(r"(\s*)([A-Za-z0-9_-]+) = (.+)", line)
        kind = kinds.get(f"{table}.{m.group(2)}" if table else m.group(2)) if m else None
        if kind is not None:
            try:
                line = f"{line}  # {describe(kind, float(m.group(3)))}"
            except ValueError:
                pass
        out.append(line)
    return "\n".join(out) + "\n"


def describe(kind: str, value: float) -> str:
    if kind == "rate":
        return f"{_si(value, 'bit/s')} ({_si(value / 8, 'B/s')})"
    if kind == "size":
        return _si(value, "B")
    if kind == "flops":
        return _si(value, "FLOP/s")
    return _duration(value)


def _si(value: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.4g} {prefix}{unit}"
    return f"{value:.4g} {unit}"


def _duration(s: float) -> str:
    if s == 0:
        return "0 s"
    if abs(s) < 1:
        return f"{s * 1e3:.4g} ms"
    if abs(s) < 120:
        return f"{s:.4g} s"
    if abs(s) < 7200:
        return f"{s / 60:.4g} min"
    return f"{s / 3600:.4g} h"
