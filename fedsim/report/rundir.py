"""Reading a run directory (DESIGN.md §7) into one object that reports and comparisons share.

A run may still be in progress or may have crashed: only metrics.jsonl is required;
summary.json, traffic.jsonl and devices.json are used when present, and JSONL readers
tolerate a torn last line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsim.errors import FedsimError
from fedsim.runtime.jsonl import read_jsonl


@dataclass(frozen=True)
class Run:
    path: Path
    name: str
    metrics: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    traffic: list[dict[str, Any]] = field(default_factory=list)
    profiles: dict[int, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return bool(self.summary)

    def column(self, key: str) -> list[Any]:
        return [m.get(key) for m in self.metrics]

    def has(self, key: str) -> bool:
        return any(m.get(key) is not None for m in self.metrics)

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(rounds, values) of the rows where `key` holds a number."""
        pts = [
            (m["round"], float(m[key]))
            for m in self.metrics
            if isinstance(m.get(key), (int, float)) and not isinstance(m.get(key), bool)
        ]
        return [r for r, _ in pts], [v for _, v in pts]

    def cumulative_bytes(self) -> list[int]:
        """Bytes up + down delivered through the end of each metrics row (inclusive)."""
        out, total = [], 0
        for m in self.metrics:
            total += int(m.get("bytes_up") or 0) + int(m.get("bytes_down") or 0)
            out.append(total)
        return out

    def evaluated(self) -> list[tuple[dict[str, Any], int]]:
        """(metrics row, cumulative bytes) for every row with a test accuracy."""
        return [
            (m, b)
            for m, b in zip(self.metrics, self.cumulative_bytes(), strict=True)
            if m.get("test_accuracy") is not None
        ]

    def stat(self, key: str) -> Any:
        """A summary.json figure, or the same figure recomputed from metrics for an
        unfinished run (no summary.json yet)."""
        if self.summary.get(key) is not None:
            return self.summary[key]
        accs = [m["test_accuracy"] for m, _ in self.evaluated()]
        derived = {
            "rounds": len(self.metrics),
            "final_accuracy": accs[-1] if accs else None,
            "best_accuracy": max(accs) if accs else None,
            "sim_time_total": self.metrics[-1].get("sim_time") if self.metrics else None,
            "wall_time_total": sum(m.get("wall_time") or 0.0 for m in self.metrics),
            "bytes_up_total": sum(int(m.get("bytes_up") or 0) for m in self.metrics),
            "bytes_down_total": sum(int(m.get("bytes_down") or 0) for m in self.metrics),
        }
        if self.has("energy_j"):
            derived["energy_j_total"] = sum(m.get("energy_j") or 0.0 for m in self.metrics)
        return derived.get(key)


def is_run_dir(path: Path) -> bool:
    return (path / "metrics.jsonl").is_file()


SEED_DIR = re.compile(r"seed-(\d+)")  # `fedsim run --seeds`: OUT/[<variant>/]seed-N


def seed_of_dir(path: Path) -> int | None:
    m = SEED_DIR.fullmatch(path.name)
    return int(m.group(1)) if m else None


def seed_dirs(path: Path) -> list[Path]:
    """The repeats inside a seeds folder (seed-N run directories), by seed."""
    if not path.is_dir() or is_run_dir(path):
        return []
    found = [p for p in path.iterdir() if seed_of_dir(p) is not None and is_run_dir(p)]
    return sorted(found, key=lambda p: seed_of_dir(p) or 0)


def variant_dirs(path: Path) -> list[Path]:
    """The run directories inside an experiment folder (a scenario with variants), with each
    variant's seed-N repeats in place of a seeds folder."""
    if not path.is_dir():
        return []
    if seed_dirs(path):
        return seed_dirs(path)
    out: list[Path] = []
    for p in sorted(p for p in path.iterdir() if p.is_dir()):
        out.extend([p] if is_run_dir(p) else seed_dirs(p))
    return out


def not_a_run(path: Path) -> FedsimError:
    if not path.exists():
        return FedsimError(f"{path}: no such directory")
    if seed_dirs(path):
        names = ", ".join(p.name for p in seed_dirs(path))
        return FedsimError(
            f"{path}: a seeds folder with one run per seed ({names}), not a run directory; "
            "name one of them (`fedsim report` and `fedsim compare` take the folder itself)"
        )
    variants = variant_dirs(path)
    if variants:
        names = ", ".join(str(p.relative_to(path)) for p in variants)
        return FedsimError(
            f"{path}: an experiment folder with variant runs ({names}), not a run directory; "
            "report one of them, or compare them with `fedsim compare`"
        )
    return FedsimError(f"{path}: no metrics.jsonl (is this a fedsim run directory?)")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise FedsimError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    except UnicodeDecodeError:
        raise FedsimError(f"{path}: not UTF-8 text") from None
    return data if isinstance(data, dict) else {}


# Fields the reports compute with: a row holding another type is a damaged file, said so in
# one line rather than failing inside a plot.
METRIC_NUMBERS = ("sim_time", "wall_time", "bytes_up", "bytes_down", "test_accuracy", "energy_j")
TRAFFIC_NUMBERS = ("payload_bytes", "wire_bytes", "t_send", "t_deliver")


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def read_rows(path: Path, numbers: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The rows of a run's JSONL file, each an object with an integer `round` and numbers
    (or null) in `numbers`; anything else is a FedsimError naming the file and the line."""
    try:
        rows = list(read_jsonl(path))
    except json.JSONDecodeError as e:
        raise FedsimError(
            f"{path}: line {_first_bad_line(path)}: not valid JSON ({e.msg})"
        ) from None
    except UnicodeDecodeError:
        raise FedsimError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise FedsimError(f"{path}: {e.strerror or e}") from None
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise FedsimError(f"{path}: line {i}: expected a JSON object, got {row!r:.60}")
        if not isinstance(row.get("round"), int) or isinstance(row.get("round"), bool):
            raise FedsimError(f"{path}: line {i}: round: expected an integer")
        for key in numbers:
            if row.get(key) is not None and not _is_number(row[key]):
                raise FedsimError(f"{path}: line {i}: {key}: expected a number, got {row[key]!r}")
    return rows


def _first_bad_line(path: Path) -> int:
    """The number of the first line that is not JSON (read_jsonl parses line by line)."""
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            try:
                json.loads(line)
            except json.JSONDecodeError:
                return i
    return 0


def device_profiles(path: Path) -> dict[int, str]:
    """client id -> device profile, from a run's devices.json (empty if there is none)."""
    devices = _read_json(path / "devices.json").get("devices", [])
    try:
        return {int(d["client"]): str(d.get("profile", "?")) for d in devices if "client" in d}
    except (TypeError, ValueError, AttributeError):
        raise FedsimError(
            f"{path / 'devices.json'}: expected devices = [{{client, profile}}, ...]"
        ) from None


def load_run(path: Path, name: str | None = None) -> Run:
    path = Path(path)
    if not is_run_dir(path):
        raise not_a_run(path)
    metrics = read_rows(path / "metrics.jsonl", METRIC_NUMBERS)
    traffic_path = path / "traffic.jsonl"
    traffic = read_rows(traffic_path, TRAFFIC_NUMBERS) if traffic_path.is_file() else []
    metrics.sort(key=lambda m: m.get("round", 0))
    profiles = device_profiles(path)
    return Run(
        path=path,
        name=name or path.name,
        metrics=metrics,
        summary=_read_json(path / "summary.json"),
        traffic=traffic,
        profiles=profiles,
    )


def expand_run_dirs(paths: list[Path]) -> list[Path]:
    """Run directories as given, with each experiment folder replaced by its variants."""
    out: list[Path] = []
    for p in map(Path, paths):
        if is_run_dir(p):
            out.append(p)
        elif variant_dirs(p):
            out.extend(variant_dirs(p))
        else:
            raise not_a_run(p)
    return out


def run_labels(paths: list[Path]) -> list[str]:
    """Short, distinct names: the folder name, with its parent where two would clash."""
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    labels = [f"{p.parent.name}/{p.name}" for p in paths]
    if len(set(labels)) == len(labels):
        return labels
    return [str(p) for p in paths]
