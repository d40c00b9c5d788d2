"""The network model inside real runs: over-commit, dropouts, async determinism, traffic CLI."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fedsim.cli import main
from fedsim.runtime.jsonl import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
FAST = [
    "--set",
    "clients.count=24",
    "--set",
    "clients.per_round=6",
    "--set",
    "train.local_steps=2",
    "--set",
    "model.args={channels=[4, 8], hidden=32}",
    "--set",
    "eval.every=100",
]


def run(tmp_path, scenario, name, *extra, fast=True):
    out = tmp_path / name
    args = [
        "run",
        str(ROOT / "scenarios" / scenario),
        "--out",
        str(out),
        "--quiet",
        *(FAST if fast else []),
        *extra,
    ]
    assert main(args) == 0
    return out


def round_times(out):
    t = [0.0] + [m["sim_time"] for m in read_jsonl(out / "metrics.jsonl")]
    return np.diff(t)


def test_overcommit_shortens_rounds_and_marks_stragglers(tmp_path):
    common = ["--rounds", "6", "--set", 'network.availability.model="always"']
    with_oc = run(tmp_path, "heterogeneous.toml", "oc", *common)
    without = run(tmp_path, "heterogeneous.toml", "nooc", *common, "--set", "server.overcommit=1.0")
    assert round_times(with_oc).mean() < round_times(without).mean()
    traffic = list(read_jsonl(with_oc / "traffic.jsonl"))
    stragglers = [t for t in traffic if t["kind"] == "update" and t["dropped"]]
    assert stragglers and all(t["reason"] == "straggler" for t in stragglers)
    for m in read_jsonl(with_oc / "metrics.jsonl"):
        assert m["aggregated"] == 6 and m["selected"] == 9
    # the round ends when the K-th accepted update arrives: the slowest accepted client
    by_round = {}
    for t in traffic:
        if t["kind"] == "update" and not t["dropped"]:
            by_round[t["round"]] = max(by_round.get(t["round"], 0.0), t["t_deliver"])
    for m in read_jsonl(with_oc / "metrics.jsonl"):
        assert m["sim_time"] == pytest.approx(by_round[m["round"]])


def test_heterogeneous_run_has_offline_dropouts(tmp_path):
    out = run(
        tmp_path,
        "heterogeneous.toml",
        "het",
        "--rounds",
        "8",
        "--set",
        "train.local_steps=2",
        fast=False,
    )
    reasons = {t["reason"] for t in read_jsonl(out / "traffic.jsonl") if t["dropped"]}
    assert {"offline", "straggler"} <= reasons


def test_async_is_deterministic_and_logs_staleness(tmp_path):
    a = run(tmp_path, "async.toml", "a", "--rounds", "5")
    b = run(tmp_path, "async.toml", "b", "--rounds", "5")
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert sa["model_sha256"] == sb["model_sha256"]
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("wall_")} for r in rows]  # noqa: E731
    assert strip(read_jsonl(a / "traffic.jsonl")) == strip(read_jsonl(b / "traffic.jsonl"))
    metrics = list(read_jsonl(a / "metrics.jsonl"))
    assert len(metrics) == 5 and all("staleness_mean" in m for m in metrics)
    assert max(m["staleness_max"] for m in metrics) >= 1
    assert all("staleness" in t for t in read_jsonl(a / "traffic.jsonl") if t["kind"] == "update")
    times = [m["sim_time"] for m in metrics]
    assert times == sorted(times)


def test_traffic_command_totals_match_summary(tmp_path):
    out = run(tmp_path, "quickstart.toml", "qs", "--rounds", "2")
    summary = json.loads((out / "summary.json").read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "fedsim", "traffic", str(out), "--by", "kind", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = {r["kind"]: r for r in json.loads(proc.stdout)}
    assert rows["update"]["wire_bytes_delivered"] == summary["bytes_up_total"]
    assert rows["model"]["wire_bytes_delivered"] == summary["bytes_down_total"]
    assert (
        rows["total"]["wire_bytes_delivered"]
        == summary["bytes_up_total"] + summary["bytes_down_total"]
    )
    table = subprocess.run(
        [sys.executable, "-m", "fedsim", "traffic", str(out)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "traffic by round" in table and "traffic by client" in table


def test_energy_is_reported_and_adds_up(tmp_path):
    fp32 = run(tmp_path, "heterogeneous.toml", "e32", "--rounds", "3")
    q4 = run(
        tmp_path, "heterogeneous.toml", "e4", "--rounds", "3", "--set", "codec.uplink=q4:stochastic"
    )
    for out in (fp32, q4):
        s = json.loads((out / "summary.json").read_text())
        rows = list(read_jsonl(out / "metrics.jsonl"))
        assert s["energy_j_total"] == pytest.approx(sum(m["energy_j"] for m in rows))
        for m in rows:
            parts = sum(m[k] for k in m if k.startswith("energy_") and k != "energy_j")
            assert m["energy_j"] == pytest.approx(parts) and m["energy_j"] > 0
        ups = [t for t in read_jsonl(out / "traffic.jsonl") if t["kind"] == "update"]
        assert all(t["energy_j"] >= 0 for t in ups)
    up32 = sum(m["energy_up_j"] for m in read_jsonl(fp32 / "metrics.jsonl"))
    up4 = sum(m["energy_up_j"] for m in read_jsonl(q4 / "metrics.jsonl"))
    assert up4 < up32  # fewer bytes on the uplink cost less radio energy


@pytest.mark.parametrize("scenario", ["heterogeneous.toml", "async.toml"])
def test_runs_never_ask_every_device_whether_it_is_online(tmp_path, monkeypatch, scenario):
    # a round's selection asks only the devices it draws (network/selection.py); the pass
    # over the whole population is left to tools that want the full list
    from fedsim.network.rounds import NetworkModel

    def whole_population(self, t):
        raise AssertionError("a run walked the whole population")

    monkeypatch.setattr(NetworkModel, "online_clients", whole_population)
    extra = ["--set", 'network.availability={model="markov", mean_on="600s", mean_off="600s"}']
    out = run(tmp_path, scenario, "x", "--rounds", "3", *extra)
    assert json.loads((out / "summary.json").read_text())["rounds_completed"] == 3


def test_devices_json_is_written_one_device_at_a_time_and_reads_back(tmp_path):
    from fedsim.runtime.netbuild import build_network
    from fedsim.scenario import load_scenario

    sc = load_scenario(ROOT / "scenarios" / "heterogeneous.toml", ["clients.count=300"])
    net = build_network(sc)
    net.write_devices(tmp_path / "devices.json")
    doc = json.loads((tmp_path / "devices.json").read_text())
    assert doc == {"devices": net.describe()} and len(doc["devices"]) == 300
    assert doc["devices"][7]["client"] == 7 and doc["devices"][7]["up_bps"] > 0
