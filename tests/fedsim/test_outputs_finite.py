"""No JSONL or JSON file of a run ever holds NaN or Infinity (issue 17): a diverging run
writes null where the number is not finite, and never dies in the writer."""

from __future__ import annotations

import json
import math

import numpy as np

from fedsim.runtime.outputs import RunOutputs, finite_json, write_json_atomic


def _strict_loads(text: str):
    def refuse(name: str):
        raise AssertionError(f"{name} in JSON")

    return json.loads(text, parse_constant=refuse)


def test_finite_json_replaces_non_finite_numbers():
    row = {
        "loss": math.nan,
        "t": math.inf,
        "neg": -math.inf,
        "np32": np.float32("nan"),
        "np64": np.float64(2.5),
        "ints": np.int64(3),
        "nested": {"xs": [1.0, math.nan, (math.inf, 2)]},
        "ok": True,
    }
    assert finite_json(row) == {
        "loss": None,
        "t": None,
        "neg": None,
        "np32": None,
        "np64": 2.5,
        "ints": 3,
        "nested": {"xs": [1.0, None, [None, 2]]},
        "ok": True,
    }


def test_run_outputs_write_null_for_nan(tmp_path):
    out = RunOutputs(tmp_path)
    out.traffic.message(
        round=1,
        kind="update",
        src="client/0",
        dst="server",
        client=0,
        codec="fp32",
        payload_bytes=4,
        wire_bytes=8,
        t_send=0.0,
        t_deliver=math.inf,
        extra={"x": math.nan},
    )
    out.end_round({"round": 1, "train_loss": math.nan, "test_loss": np.float32("inf")})
    out.event("diverged", loss=math.nan)
    out.close()
    for name in ("metrics.jsonl", "traffic.jsonl", "events.jsonl"):
        for line in (tmp_path / name).read_text().splitlines():
            _strict_loads(line)
    metrics = _strict_loads((tmp_path / "metrics.jsonl").read_text())
    assert metrics["train_loss"] is None and metrics["test_loss"] is None


def test_summary_writer_writes_null_for_inf(tmp_path):
    path = tmp_path / "summary.json"
    write_json_atomic(path, {"final_loss": math.inf, "best_accuracy": np.float32(0.5)})
    assert _strict_loads(path.read_text()) == {"final_loss": None, "best_accuracy": 0.5}
