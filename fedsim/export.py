"""``fedsim export RUN --format csv``: a run's metrics and traffic logs as CSV tables.

One CSV per JSONL log (metrics.csv, traffic.csv), one row per line; the columns are every
key that occurs, in order of first appearance. Missing values are empty cells; nested
values (lists, tables) are written as JSON. An experiment's folder exports each run.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from fedsim.errors import FedsimError

TABLES = ("metrics", "traffic")


def export_csv(
    run_dir: str | Path, out_dir: str | Path | None = None, *, force: bool = False
) -> list[Path]:
    """Write <table>.csv for each log of the run (or of each run of an experiment folder)
    into ``out_dir`` (default: the run directory). Returns the files written."""
    from fedsim.api import ExperimentResult, load_run

    run_dir = Path(run_dir)
    found = load_run(run_dir)
    if isinstance(found, ExperimentResult):
        base = Path(out_dir) if out_dir is not None else run_dir
        jobs = [(r.path, base / name) for name, r in found.runs.items()]
    else:
        jobs = [(found.path, Path(out_dir) if out_dir is not None else run_dir)]
    targets = [(src / f"{t}.jsonl", dst / f"{t}.csv") for src, dst in jobs for t in TABLES]
    clash = [dst for _, dst in targets if dst.exists()]
    if clash and not force:
        raise FedsimError(f"{clash[0]}: exists (pass --force to overwrite)")
    written = []
    for src, dst in targets:
        if src.exists():
            write_csv(dst, _rows(src))
            written.append(dst)
    return written


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})
    tmp.replace(path)


def _rows(path: Path) -> list[dict[str, Any]]:
    from fedsim.runtime.jsonl import read_jsonl

    return list(read_jsonl(path))


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return value
