"""End to end through the CLI: outputs contract, exact bytes, determinism."""

import hashlib
import json
from pathlib import Path

import pytest

from fedsim.cli import main
from fedsim.runtime.jsonl import read_jsonl

SMALL = """
name = "small"
seed = 3
rounds = 3
[data]
dataset = "mnist5k"
partition = "dirichlet"
alpha = 0.5
min_size = 20
[model]
name = "cnn"
[clients]
count = 10
per_round = 3
[train]
local_steps = 5
batch_size = 20
lr = 0.05
[eval]
every = 1
"""


def strip_wall(rows):
    return [{k: v for k, v in r.items() if not k.startswith("wall_")} for r in rows]


def run(tmp_path: Path, name: str, text: str, *extra: str) -> Path:
    scen = tmp_path / f"{name}.toml"
    scen.write_text(text)
    out = tmp_path / name
    assert main(["run", str(scen), "--out", str(out), "--quiet", *extra]) == 0
    return out


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("det")
    return run(tmp, "a", SMALL), run(tmp, "b", SMALL)


def test_outputs_contract(two_runs):
    out, _ = two_runs
    for f in ("scenario.toml", "metrics.jsonl", "traffic.jsonl", "summary.json", "events.jsonl"):
        assert (out / f).exists(), f
    metrics = list(read_jsonl(out / "metrics.jsonl"))
    assert [m["round"] for m in metrics] == [1, 2, 3]
    for m in metrics:
        for k in (
            "round",
            "sim_time",
            "wall_time",
            "selected",
            "aggregated",
            "dropped",
            "bytes_up",
            "bytes_down",
            "test_accuracy",
            "test_loss",
            "train_loss",
        ):
            assert k in m, k
    assert all(b["sim_time"] > a["sim_time"] for a, b in zip(metrics, metrics[1:], strict=False))
    traffic = list(read_jsonl(out / "traffic.jsonl"))
    assert [t["seq"] for t in traffic] == list(range(len(traffic)))
    for t in traffic:
        for k in (
            "seq",
            "round",
            "kind",
            "src",
            "dst",
            "codec",
            "payload_bytes",
            "wire_bytes",
            "t_send",
            "t_deliver",
            "dropped",
            "reason",
        ):
            assert k in t, k
    s = json.loads((out / "summary.json").read_text())
    for k in (
        "scenario",
        "seed",
        "rounds",
        "final_accuracy",
        "best_accuracy",
        "sim_time_total",
        "wall_time_total",
        "bytes_up_total",
        "bytes_down_total",
        "model_params",
        "model_sha256",
        "versions",
    ):
        assert k in s, k
    assert s["bytes_up_total"] == sum(m["bytes_up"] for m in metrics)
    assert s["bytes_down_total"] == sum(m["bytes_down"] for m in metrics)
    assert s["bytes_up_total"] == sum(
        t["wire_bytes"] for t in traffic if t["kind"] == "update" and not t["dropped"]
    )


def test_fp32_bytes_are_exact(two_runs):
    """An fp32 update of the CNN carries exactly 4 bytes per parameter in its tensor frames."""
    out, _ = two_runs
    s = json.loads((out / "summary.json").read_text())
    traffic = list(read_jsonl(out / "traffic.jsonl"))
    up = [t for t in traffic if t["kind"] == "update"]
    n_params = s["model_params"]
    for t in up:
        # payload = header frame + one raw float32 frame per tensor
        assert t["payload_bytes"] > 4 * n_params
        assert t["payload_bytes"] < 4 * n_params + 4096
        assert t["wire_bytes"] > t["payload_bytes"]


def test_same_seed_same_everything(two_runs):
    a, b = two_runs
    sa = json.loads((a / "summary.json").read_text())
    sb = json.loads((b / "summary.json").read_text())
    assert sa["model_sha256"] == sb["model_sha256"]
    for f in ("metrics.jsonl", "traffic.jsonl"):
        assert strip_wall(read_jsonl(a / f)) == strip_wall(read_jsonl(b / f)), f


def test_model_sha256_matches_definition(two_runs):
    """summary.model_sha256 = SHA-256 over the state_dict in sorted name order (raw LE bytes)."""
    import torch

    from fedsim.runtime.outputs import model_sha256

    sd = {"b": torch.arange(3, dtype=torch.float32), "a": torch.ones(2, dtype=torch.float32)}
    expect = hashlib.sha256(sd["a"].numpy().tobytes() + sd["b"].numpy().tobytes()).hexdigest()
    assert model_sha256(sd) == expect


def test_different_seed_differs(tmp_path, two_runs):
    c = run(tmp_path, "c", SMALL.replace("seed = 3", "seed = 4"))
    sa = json.loads((two_runs[0] / "summary.json").read_text())
    sc = json.loads((c / "summary.json").read_text())
    assert sa["model_sha256"] != sc["model_sha256"]


def test_sweep_runs_a_grid_and_writes_a_comparison(tmp_path):
    scen = tmp_path / "s.toml"
    scen.write_text(
        SMALL.replace("rounds = 3", "rounds = 1").replace("local_steps = 5", "local_steps = 1")
    )
    out = tmp_path / "sweep"
    args = [
        "run",
        str(scen),
        "--out",
        str(out),
        "--quiet",
        "--sweep",
        "codec.uplink=fp32,q4",
        "--sweep",
        "clients.per_round=2,3",
    ]
    assert main(args) == 0
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert names == [
        "uplink-fp32_per_round-2",
        "uplink-fp32_per_round-3",
        "uplink-q4_per_round-2",
        "uplink-q4_per_round-3",
    ]
    rows = {r["run"]: r for r in json.loads((out / "comparison.json").read_text())["rows"]}
    assert set(rows) == set(names) and (out / "comparison.md").exists()
    for n in names:
        s = json.loads((out / n / "summary.json").read_text())
        assert rows[n]["bytes_up_total"] == s["bytes_up_total"]
    q4 = json.loads((out / "uplink-q4_per_round-2" / "summary.json").read_text())
    fp = json.loads((out / "uplink-fp32_per_round-2" / "summary.json").read_text())
    assert q4["bytes_up_total"] < 0.14 * fp["bytes_up_total"]  # 4-bit codes + scales vs fp32
