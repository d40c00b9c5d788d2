"""`fedsim traffic RUN_DIR`: tables over traffic.jsonl by round, client, kind or device profile."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from fedsim.errors import FedsimError
from fedsim.report.rundir import TRAFFIC_NUMBERS, device_profiles, read_rows

COLUMNS = [
    "messages",
    "delivered",
    "dropped",
    "payload_bytes",
    "wire_bytes",
    "wire_bytes_delivered",
]


# What the tables read from every row (docs/outputs.md); a row without them is damaged.
REQUIRED = {"kind": str, "payload_bytes": int, "wire_bytes": int, "dropped": bool}


def load_rows(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "traffic.jsonl"
    if not run_dir.is_dir():
        raise FedsimError(f"{run_dir}: no such directory")
    if not path.is_file():
        raise FedsimError(f"{run_dir}: no traffic.jsonl (is this a fedsim run directory?)")
    rows = read_rows(path, TRAFFIC_NUMBERS)
    for i, row in enumerate(rows, 1):
        for key, typ in REQUIRED.items():
            v = row.get(key)
            if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
                raise FedsimError(f"{path}: line {i}: {key}: expected {typ.__name__}, got {v!r}")
    return rows


def client_profiles(run_dir: Path) -> dict[int, str]:
    return device_profiles(run_dir)


def group(rows: list[dict[str, Any]], key: str, profiles: dict[int, str]) -> list[dict[str, Any]]:
    acc: dict[Any, dict[str, Any]] = defaultdict(lambda: dict.fromkeys(COLUMNS, 0))
    for r in rows:
        if key == "profile":
            k = profiles.get(r.get("client"), "?") if r.get("client") is not None else "server"
        else:
            k = r.get(key)
        a = acc[k]
        a["messages"] += 1
        a["payload_bytes"] += r["payload_bytes"]
        a["wire_bytes"] += r["wire_bytes"]
        if r["dropped"]:
            a["dropped"] += 1
        else:
            a["delivered"] += 1
            a["wire_bytes_delivered"] += r["wire_bytes"]
    keys = sorted(acc, key=lambda k: (k is None, str(type(k)), k if k is not None else 0))
    out = [{key: k, **acc[k]} for k in keys]
    total = {key: "total", **{c: sum(row[c] for row in out) for c in COLUMNS}}
    return out + [total]


def render(table: list[dict[str, Any]], fmt: str, title: str) -> str:
    if fmt == "json":
        return json.dumps(table, indent=1)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(table[0].keys()))
        w.writeheader()
        w.writerows(table)
        return buf.getvalue()
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for c in table[0]:
        t.add_column(c, justify="right")
    for row in table:
        t.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in row.values()))
    console = Console(file=io.StringIO(), width=140, force_terminal=False)
    console.print(t)
    return console.file.getvalue()


def traffic_command(args: Any) -> int:
    run_dir = Path(args.run_dir)
    rows = load_rows(run_dir)
    if args.round:
        rows = [r for r in rows if r["round"] in set(args.round)]
    if args.client:
        rows = [r for r in rows if r.get("client") in set(args.client)]
    if args.kind:
        rows = [r for r in rows if r["kind"] in set(args.kind)]
    if not rows:
        print("no messages match", file=sys.stderr)
        return 0
    profiles = client_profiles(run_dir)
    for key in args.by or ["round", "client"]:
        print(render(group(rows, key, profiles), args.format, f"traffic by {key}"))
    return 0
