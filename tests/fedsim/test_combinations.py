"""The composition matrix (issue 16, DESIGN.md §0) on a tiny scenario.

For every algorithm `fedsim list algorithms` prints, synchronous and FedBuff: in process, with
2 ipc workers, on Ray, and killed after its round-2 checkpoint then resumed all give the same
`model_sha256`, metrics and traffic (without `wall_*`) — or `fedsim validate` refuses the
combination in one line. The same over every codec spec family of docs/codecs.md on the
uplink and on the downlink. Each executor runs all cases in one process (combo_driver.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fedsim.algorithms import ALGORITHMS
from fedsim.errors import ScenarioError
from fedsim.runtime.jsonl import read_jsonl
from fedsim.scenario.checks import check_scenario
from fedsim.scenario.load import validate_doc

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]

BASE = {
    "name": "tiny",
    "seed": 3,
    "rounds": 3,
    "data": {"dataset": "mnist5k"},
    "model": {"name": "mlp", "args": {"hidden": [32]}},
    "clients": {"count": 6, "per_round": 3},
    "train": {"local_steps": 2, "batch_size": 16},
    "server": {"concurrency": 3, "buffer_size": 2},
    "runtime": {"checkpoint_every": 1, "heartbeat_interval": 0.2, "worker_timeout": 5.0},
}

CODECS = [
    "fp16",
    "bf16",
    "q8",
    "q4:stochastic",
    "q2",
    "qsgd:s=4",
    "sign",
    "topk:0.1",
    "randk:0.1",
    "topk:0.1+q8",
    "ef(topk:0.1)",
    "ef(sign)",
    "ef(q2)",
]


def merged(**parts: dict) -> dict:
    doc = json.loads(json.dumps(BASE))
    for key, value in parts.items():
        doc[key] = {**doc.get(key, {}), **value}
    return doc


def all_cases() -> tuple[dict[str, dict], dict[str, str]]:
    """(cases that must run, refused case -> the one-line reason)."""
    cases, refused = {}, {}
    candidates = {}
    for algo in sorted(ALGORITHMS):
        for mode in ("sync", "async"):
            candidates[f"{algo}-{mode}"] = merged(algorithm={"name": algo}, server={"mode": mode})
    for mode in ("sync", "async"):  # OQFL's int wire: its own codecs and a server latent
        candidates[f"oqfl-int-{mode}"] = merged(
            algorithm={"name": "oqfl", "wire": "int"}, server={"mode": mode}
        )
    for i, spec in enumerate(CODECS):
        for direction in ("uplink", "downlink"):
            candidates[f"codec{i}-{direction}"] = merged(codec={direction: spec})
    candidates["codec-ef-down-async"] = merged(
        codec={"downlink": "ef(topk:0.1)"}, server={"mode": "async"}
    )
    for mode in ("sync", "async"):  # batched clients: groups of 2 and 1 (3 per round)
        candidates[f"batched-{mode}"] = merged(
            runtime={"batch_clients": 2, "batch_kernels": "vmap"},
            codec={"uplink": "q8"},
            server={"mode": mode},
        )
    for name, doc in candidates.items():
        try:
            check_scenario(validate_doc(doc))
        except ScenarioError as e:
            assert "\n" not in str(e) and e.field
            refused[name] = f"{e.field}: {e.message}"
            continue
        cases[name] = doc
    return cases, refused


def strip(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("wall_")} for r in rows]


def drive(tmp: Path, cases: dict, mode: str) -> Path:
    spec = tmp / "cases.json"
    spec.write_text(json.dumps(cases))
    out = tmp / mode
    driver = Path(__file__).with_name("combo_driver.py")
    proc = subprocess.run(
        [sys.executable, str(driver), str(spec), str(out), mode],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("matrix")
    cases, refused = all_cases()
    outs = {mode: drive(tmp, cases, mode) for mode in ("inproc", "resume", "ipc", "ray")}
    return cases, refused, outs


def test_refusals_are_expected(matrix):
    _, refused, _ = matrix
    # the combinations the runtime cannot honour, each with its one-line reason
    assert "feddip-async" in refused and all(k.endswith("-async") for k in refused), refused
    assert "fedavg-async" not in refused and "codec10-downlink" not in refused
    assert "batched-async" in refused and "batched-sync" not in refused


@pytest.mark.parametrize("mode", ["resume", "ipc", "ray"])
def test_every_case_matches_in_process(matrix, mode):
    cases, _, outs = matrix
    bad = []
    for name in cases:
        a, b = outs["inproc"] / name, outs[mode] / name
        sa = json.loads((a / "summary.json").read_text())
        sb = json.loads((b / "summary.json").read_text())
        if sa["model_sha256"] != sb["model_sha256"]:
            bad.append(f"{name}: model_sha256")
            continue
        for log in ("metrics.jsonl", "traffic.jsonl"):
            if strip(read_jsonl(a / log)) != strip(read_jsonl(b / log)):
                bad.append(f"{name}: {log}")
    assert not bad, bad


def test_cases_really_ran(matrix):
    cases, _, outs = matrix
    for name in cases:
        rows = read_jsonl(outs["inproc"] / name / "metrics.jsonl")
        assert [r["round"] for r in rows] == [1, 2, 3], name
        assert all(r["aggregated"] > 0 for r in rows), name
