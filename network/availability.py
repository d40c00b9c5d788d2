"""When devices are online: always, a Markov on/off model, or a trace of online intervals.

Every model answers the same three questions, deterministically and in O(log k):
``is_online(device, t)``, ``next_offline(device, t)`` (when a device online at ``t`` goes
offline; ``t`` itself when it is offline; ``inf`` if never) and ``next_online(device, t)``.
Online intervals are half-open, ``[start, end)``.
"""

from __future__ import annotations

import bisect
import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "Availability",
    "AlwaysOn",
    "MarkovOnOff",
    "TraceAvailability",
    "load_trace",
    "load_trace_csv",
    "load_trace_json",
    "from_fedscale",
]


@runtime_checkable
class Availability(Protocol):
    def is_online(self, device: int, t: float) -> bool: ...

    def next_offline(self, device: int, t: float) -> float: ...

    def next_online(self, device: int, t: float) -> float: ...


class AlwaysOn:
    """Every device is online all the time."""

    def is_online(self, device: int, t: float) -> bool:
        return True

    def next_offline(self, device: int, t: float) -> float:
        return math.inf

    def next_online(self, device: int, t: float) -> float:
        return t


class _Intervals:
    """Sorted, disjoint online intervals of one device, as two lists."""

    __slots__ = ("starts", "ends")

    def __init__(self, starts: list[float], ends: list[float]):
        self.starts = starts
        self.ends = ends

    def find(self, t: float) -> int:
        """Index of the interval containing ``t``, or -1."""
        i = bisect.bisect_right(self.starts, t) - 1
        return i if i >= 0 and t < self.ends[i] else -1


def _merge(pairs: Iterable[Sequence[float]], where: str) -> _Intervals:
    cleaned = []
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"{where}: an interval is [start, end], got {pair!r}")
        s, e = float(pair[0]), float(pair[1])
        if not (math.isfinite(s) and not math.isnan(e)) or e < s:
            raise ValueError(f"{where}: bad interval [{s}, {e}] (need start <= end)")
        if e > s:
            cleaned.append((s, e))
    cleaned.sort()
    starts: list[float] = []
    ends: list[float] = []
    for s, e in cleaned:
        if ends and s <= ends[-1]:
            ends[-1] = max(ends[-1], e)
        else:
            starts.append(s)
            ends.append(e)
    return _Intervals(starts, ends)


class MarkovOnOff:
    """Two-state continuous-time Markov chain per device: exponential on and off durations.

    The state at ``t_start`` is online with the stationary probability
    ``mean_on / (mean_on + mean_off)``; by memorylessness the first sojourn is again
    exponential. Each device draws from its own stream ``default_rng([seed, device])``, in
    fixed-size chunks, so its intervals do not depend on which devices or times are asked
    about, nor in what order. Intervals are extended lazily as later times are queried.
    """

    _CHUNK = 64

    def __init__(self, *, mean_on_s: float, mean_off_s: float, seed: int, t_start: float = 0.0):
        if not (mean_on_s > 0 and math.isfinite(mean_on_s)):
            raise ValueError(f"mean_on_s must be > 0 and finite, got {mean_on_s}")
        if not (mean_off_s >= 0 and math.isfinite(mean_off_s)):
            raise ValueError(f"mean_off_s must be >= 0 and finite, got {mean_off_s}")
        self.mean_on_s = float(mean_on_s)
        self.mean_off_s = float(mean_off_s)
        self.seed = int(seed)
        self.t_start = float(t_start)
        self._devices: dict[int, tuple[_Intervals, np.random.Generator, list[float]]] = {}

    @property
    def stationary_online(self) -> float:
        return self.mean_on_s / (self.mean_on_s + self.mean_off_s)

    def _state(self, device: int) -> tuple[_Intervals, np.random.Generator, list[float]]:
        entry = self._devices.get(device)
        if entry is None:
            if device < 0:
                raise IndexError(f"no device {device}")
            rng = np.random.default_rng([self.seed, device])
            iv = _Intervals([], [])
            if self.mean_off_s == 0.0:
                iv.starts.append(self.t_start)
                iv.ends.append(math.inf)
                clock = math.inf
            elif rng.random() < self.stationary_online:
                clock = self.t_start
            else:
                clock = self.t_start + float(rng.exponential(self.mean_off_s))
            # clock: where the next online sojourn starts (all before it are generated)
            entry = (iv, rng, [clock])
            self._devices[device] = entry
        return entry

    def _extend(self, iv: _Intervals, rng: np.random.Generator, state: list[float]) -> None:
        on = rng.exponential(self.mean_on_s, self._CHUNK).tolist()
        off = rng.exponential(self.mean_off_s, self._CHUNK).tolist()
        clock = state[0]
        for k in range(self._CHUNK):
            iv.starts.append(clock)
            clock += on[k]
            iv.ends.append(clock)
            clock += off[k]
        state[0] = clock

    def _covering(self, device: int, t: float) -> _Intervals:
        """The device's intervals, generated at least past ``t``."""
        iv, rng, state = self._state(device)
        while state[0] <= t:
            self._extend(iv, rng, state)
        return iv

    def is_online(self, device: int, t: float) -> bool:
        if t < self.t_start:
            return False
        return self._covering(device, t).find(t) >= 0

    def next_offline(self, device: int, t: float) -> float:
        if t < self.t_start:
            return t
        iv = self._covering(device, t)
        i = iv.find(t)
        return iv.ends[i] if i >= 0 else t

    def next_online(self, device: int, t: float) -> float:
        t = max(t, self.t_start)
        iv = self._covering(device, t)
        i = bisect.bisect_right(iv.starts, t) - 1
        if i >= 0 and t < iv.ends[i]:
            return t
        if i + 1 >= len(iv.starts):
            iv, rng, state = self._state(device)
            if state[0] == math.inf:
                return math.inf
            self._extend(iv, rng, state)
        return iv.starts[i + 1]


class TraceAvailability:
    """Online intervals per device from a trace, optionally repeating with a period.

    ``intervals[device]`` lists ``(start, end)`` online intervals (merged when they overlap).
    ``period`` (one number, or one per device) makes the trace repeat: the state at ``t``
    is the state at ``t mod period``, as FedScale does with ``finish_time``. Devices missing
    from the trace are always offline (``missing="offline"``) or always online.
    """

    def __init__(
        self,
        intervals: Mapping[int, Iterable[Sequence[float]]],
        *,
        period: float | Mapping[int, float] | None = None,
        missing: str = "offline",
    ):
        if missing not in ("offline", "online"):
            raise ValueError(f"missing must be 'offline' or 'online', got {missing!r}")
        self.missing = missing
        self._iv = {int(d): _merge(pairs, f"trace device {d}") for d, pairs in intervals.items()}
        self._period: dict[int, float] = {}
        for d in self._iv:
            p = period.get(d) if isinstance(period, Mapping) else period
            if p is None:
                continue
            if not (p > 0 and math.isfinite(p)):
                raise ValueError(f"trace device {d}: period must be > 0, got {p}")
            iv = self._iv[d]
            if iv.starts and (iv.starts[0] < 0 or iv.ends[-1] > p):
                raise ValueError(f"trace device {d}: intervals must lie within [0, period={p}]")
            self._period[d] = float(p)

    @property
    def devices(self) -> list[int]:
        return sorted(self._iv)

    def _lookup(self, device: int, t: float) -> tuple[_Intervals | None, float, float]:
        """(intervals, base, t - base): ``base`` is the start of the period containing ``t``."""
        iv = self._iv.get(device)
        p = self._period.get(device)
        if iv is None or p is None:
            return iv, 0.0, t
        base = math.floor(t / p) * p
        return iv, base, t - base

    def is_online(self, device: int, t: float) -> bool:
        iv, _, tm = self._lookup(device, t)
        if iv is None:
            return self.missing == "online"
        return iv.find(tm) >= 0

    def next_offline(self, device: int, t: float) -> float:
        iv, base, tm = self._lookup(device, t)
        if iv is None:
            return math.inf if self.missing == "online" else t
        i = iv.find(tm)
        if i < 0:
            return t
        end = iv.ends[i]
        p = self._period.get(device)
        if p is not None and end >= p and iv.starts[0] <= 0.0:
            if len(iv.starts) == 1:
                return math.inf  # online over the whole period
            end = p + iv.ends[0]  # continues into the next period's first interval
        return base + end

    def next_online(self, device: int, t: float) -> float:
        iv, base, tm = self._lookup(device, t)
        if iv is None:
            return t if self.missing == "online" else math.inf
        i = bisect.bisect_right(iv.starts, tm) - 1
        if i >= 0 and tm < iv.ends[i]:
            return t
        if i + 1 < len(iv.starts):
            return base + iv.starts[i + 1]
        p = self._period.get(device)
        if p is None or not iv.starts:
            return math.inf
        return base + p + iv.starts[0]


def load_trace_csv(path: str | Path) -> dict[int, list[tuple[float, float]]]:
    """Rows ``client_id,start,end`` (seconds); a header row is allowed."""
    out: dict[int, list[tuple[float, float]]] = {}
    with open(path, newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh), 1):
            if not row or row[0].lstrip().startswith("#"):
                continue
            if len(row) != 3:
                raise ValueError(f"{path}:{lineno}: expected client_id,start,end, got {row!r}")
            try:
                cid, s, e = int(row[0]), float(row[1]), float(row[2])
            except ValueError:
                if lineno == 1:
                    continue  # header
                raise ValueError(
                    f"{path}:{lineno}: expected client_id,start,end, got {row!r}"
                ) from None
            out.setdefault(cid, []).append((s, e))
    return out


def load_trace_json(path: str | Path) -> dict[int, list[tuple[float, float]]]:
    """``{"client_id": [[start, end], ...], ...}``."""
    with open(path) as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object {{client_id: [[start, end], ...]}}")
    out: dict[int, list[tuple[float, float]]] = {}
    for key, pairs in data.items():
        try:
            cid = int(key)
        except ValueError:
            raise ValueError(f"{path}: client id {key!r} is not an integer") from None
        if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 for p in pairs
        ):
            raise ValueError(f"{path}: client {key}: expected a list of [start, end] pairs")
        out[cid] = [(float(s), float(e)) for s, e in pairs]
    return out


def load_trace(
    path: str | Path, *, period: float | None = None, missing: str = "offline"
) -> TraceAvailability:
    """A :class:`TraceAvailability` from a ``.csv`` or ``.json`` file."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        intervals = load_trace_csv(path)
    elif suffix == ".json":
        intervals = load_trace_json(path)
    else:
        raise ValueError(f"{path}: trace files are .csv or .json")
    return TraceAvailability(intervals, period=period, missing=missing)


def from_fedscale(
    behave: Mapping[object, Mapping[str, object]], *, missing: str = "offline"
) -> TraceAvailability:
    """Convert FedScale's ``client_behave_trace`` (already loaded) to a trace.

    FedScale keeps, per client, lists ``active`` (online starts) and ``inactive`` (online
    ends) and ``finish_time`` (the trace repeats with that period). Its client ids are
    renumbered 0..n-1 in sorted order. We never unpickle anything: load the file yourself
    (see docs/network-model.md) and pass the dict.
    """
    intervals: dict[int, list[tuple[float, float]]] = {}
    periods: dict[int, float] = {}
    for new_id, old_id in enumerate(sorted(behave)):
        rec = behave[old_id]
        active, inactive = list(rec["active"]), list(rec["inactive"])
        if len(active) != len(inactive):
            raise ValueError(f"FedScale client {old_id}: 'active' and 'inactive' differ in length")
        intervals[new_id] = [(float(s), float(e)) for s, e in zip(active, inactive, strict=True)]
        finish = rec.get("finish_time")
        if finish is not None:
            end = max([float(e) for e in inactive], default=0.0)
            periods[new_id] = max(float(finish), end)
    return TraceAvailability(intervals, period=periods or None, missing=missing)
