"""The run directory: scenario.toml, metrics.jsonl, traffic.jsonl, events.jsonl, summary.json."""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import fedsim
from fedsim.runtime.jsonl import JsonlWriter, TrafficLog


def model_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the state_dict: tensors in sorted name order, raw little-endian bytes."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        arr = t.numpy()
        if arr.dtype.byteorder == ">":
            arr = arr.byteswap().view(arr.dtype.newbyteorder("<"))
        h.update(arr.tobytes())
    return h.hexdigest()


def finite_json(obj: Any) -> Any:
    """`obj` with every NaN or infinity (a diverged loss, an unreached time) as None, numpy
    scalars as Python numbers and tuples as lists: JSON has no NaN, and a reader's
    json.loads must never meet one. Writers then dump with allow_nan=False."""
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


class FiniteJsonlWriter(JsonlWriter):
    """A JSONL writer that writes non-finite floats as null instead of failing."""

    def write(self, row: dict[str, Any]) -> None:
        super().write(finite_json(row))


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(finite_json(obj), fh, indent=2, sort_keys=False, allow_nan=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def versions() -> dict[str, str]:
    return {
        "fedsim": fedsim.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


# What `fedsim run` and `fedsim report` write into a run directory (DESIGN.md §7), and what
# an experiment folder (a scenario with variants) holds beside its variant runs.
RUN_FILES = (
    "scenario.toml",
    "metrics.jsonl",
    "traffic.jsonl",
    "events.jsonl",
    "summary.json",
    "devices.json",
    "report.md",
    "report.html",
    "comparison.md",
    "comparison.html",
    "comparison.json",
    "model.safetensors",
    # the figures of an experiment's comparison (fedsim.report.compare.COMPARE_FIGURES)
    "accuracy_vs_time.png",
    "accuracy_vs_bytes.png",
    "accuracy_vs_round.png",
    "energy.png",
)
RUN_FOLDERS = ("plots", "checkpoints", "compare")


def is_run_output(path: Path) -> bool:
    """A variant's run directory from an earlier run: it has the logs a run opens first
    (a folder of the user's that merely holds a scenario.toml is not one)."""

    def logs(p: Path) -> bool:
        return all((p / f).is_file() for f in ("metrics.jsonl", "events.jsonl"))

    if not path.is_dir():
        return False
    # or a seeds folder (`fedsim run --seeds`): one variant's runs in seed-N/
    return logs(path) or any(p.name.startswith("seed-") and logs(p) for p in path.iterdir())


def clean_run_dir(out_dir: Path) -> list[Path]:
    """Remove what an earlier run left in out_dir (`fedsim run --force`): its logs, summary,
    checkpoints, report and plots, and the run directories of its variants. Anything else
    (a user's own files) stays. Returns what was removed."""
    removed = []
    for entry in sorted(Path(out_dir).iterdir()):
        name = entry.name
        leftover = name in RUN_FILES or (name.endswith(".tmp") and name[:-4] in RUN_FILES)
        if entry.is_file() and leftover:
            entry.unlink()
        elif entry.is_dir() and not entry.is_symlink() and name in RUN_FOLDERS:
            shutil.rmtree(entry)
        elif not entry.is_symlink() and is_run_output(entry):
            clean_run_dir(entry)
            if any(entry.iterdir()):
                continue  # the user's files inside stay, and so does the folder
            entry.rmdir()
        else:
            continue
        removed.append(entry)
    return removed


class RunOutputs:
    def __init__(self, out_dir: str | Path, *, append: bool = False):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.metrics = FiniteJsonlWriter(self.dir / "metrics.jsonl", append=append)
        self.traffic_writer = FiniteJsonlWriter(self.dir / "traffic.jsonl", append=append)
        self.events = FiniteJsonlWriter(self.dir / "events.jsonl", append=append)
        self.traffic = TrafficLog(self.traffic_writer)

    def event(self, kind: str, **fields: Any) -> None:
        self.events.write({"event": kind, "wall_time": time.time(), **fields})
        self.events.flush()

    def end_round(self, row: dict[str, Any]) -> None:
        """Traffic first, then the metrics row: a metrics row implies its traffic is on disk."""
        self.traffic_writer.flush()
        self.metrics.write(row)
        self.metrics.flush()

    def close(self) -> None:
        for w in (self.metrics, self.traffic_writer, self.events):
            w.close()
