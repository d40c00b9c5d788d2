"""JSONL run outputs: the row writer and reader, and the per-message traffic log.

metrics.jsonl, traffic.jsonl and events.jsonl are written with :class:`JsonlWriter` (one
JSON object per line, appended whole) and read back with :func:`read_jsonl`. The traffic
log (:class:`TrafficLog`) has one row per message. Fields (docs/outputs.md): seq, round, kind (`model` down, `update` up, `control`), src,
dst, client, codec, payload_bytes, wire_bytes, t_send, t_deliver (simulated seconds),
dropped, reason, and `wall_*` fields for real timings. Readers tolerate a torn last line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any


def _finite(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if x == x and abs(x) != float("inf") else None


class JsonlWriter:
    """Appends rows whole and flushes them; `truncate_to` supports resume from an offset."""

    def __init__(self, path: str | Path, *, append: bool = False):
        self.path = Path(path)
        self._fh: IO[str] = open(self.path, "a" if append else "w", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        self._fh.write(json.dumps(row, separators=(",", ":"), allow_nan=False) + "\n")

    def flush(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def tell(self) -> int:
        self._fh.flush()
        return self._fh.tell()

    def close(self) -> None:
        self._fh.close()


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL file; a torn (unterminated or unparsable) last line is ignored."""
    with open(path, encoding="utf-8") as fh:
        lines = fh.readlines()
    for i, line in enumerate(lines):
        last = i == len(lines) - 1
        if last and not line.endswith("\n"):
            return
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            if last:
                return
            raise


class TrafficLog:
    def __init__(self, writer: JsonlWriter, *, start_seq: int = 0):
        self.writer = writer
        self.seq = start_seq

    def message(
        self,
        *,
        round: int,
        kind: str,
        src: str,
        dst: str,
        client: int | None,
        codec: str,
        payload_bytes: int,
        wire_bytes: int,
        t_send: float | None,
        t_deliver: float | None,
        dropped: bool = False,
        reason: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        row = {
            "seq": self.seq,
            "round": round,
            "kind": kind,
            "src": src,
            "dst": dst,
            "client": client,
            "codec": codec,
            "payload_bytes": int(payload_bytes),
            "wire_bytes": int(wire_bytes),
            "t_send": _finite(t_send),
            "t_deliver": _finite(t_deliver),
            "dropped": bool(dropped),
            "reason": reason,
        }
        for k, v in extra.items():
            row[k] = _finite(v) if isinstance(v, float) else v
        self.seq += 1
        self.writer.write(row)
        return row


def totals(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Delivered bytes (dropped messages excluded), as summary.json counts them."""
    up = down = 0
    for r in rows:
        if r["dropped"]:
            continue
        if r["kind"] == "update":
            up += r["wire_bytes"]
        elif r["kind"] == "model":
            down += r["wire_bytes"]
    return {"bytes_up": up, "bytes_down": down}
