"""The run directory: scenario.toml, metrics.jsonl, traffic.jsonl, events.jsonl, summary.json."""

from __future__ import annotations

import hashlib
import json
import os
import platform
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


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, sort_keys=False, allow_nan=False)
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


class RunOutputs:
    def __init__(self, out_dir: str | Path, *, append: bool = False):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.metrics = JsonlWriter(self.dir / "metrics.jsonl", append=append)
        self.traffic_writer = JsonlWriter(self.dir / "traffic.jsonl", append=append)
        self.events = JsonlWriter(self.dir / "events.jsonl", append=append)
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
