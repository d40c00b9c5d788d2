"""The dry run and the des_events_per_s benchmark run (tiny sizes; no timing asserted)."""

import importlib.util
from pathlib import Path

from fedsim.network.availability import MarkovOnOff
from fedsim.network.dryrun import dry_run

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_des.py"


def test_dry_run_is_deterministic_and_counts_events():
    kw = dict(rounds=3, clients=50, seed=2, accept_first=40)
    a, b = dry_run(**kw), dry_run(**kw)
    assert (a.events, a.sim_time_s, a.accepted, a.dropped) == (
        b.events,
        b.sim_time_s,
        b.accepted,
        b.dropped,
    )
    assert a.accepted == 3 * 40 and a.dropped == 3 * 10
    assert a.events > 3 * 40 * 5 and a.sim_time_s > 0


def test_dry_run_with_availability_and_deadline():
    r = dry_run(
        rounds=3,
        clients=60,
        availability=MarkovOnOff(mean_on_s=300, mean_off_s=100, seed=0),
        deadline_s=120.0,
    )
    assert r.clients_per_round < 60
    assert r.accepted + r.dropped == round(r.clients_per_round * 3)


def test_benchmark_runs_and_reports_its_figure(monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_des", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "ROUNDS", (2, 2))
    monkeypatch.setattr(bench, "CLIENTS", 40)
    monkeypatch.setattr(bench, "REF_SLICE", 1000)
    figures = bench.run(quick=True)
    fig = figures["des_events_per_s"]
    assert set(fig) == {"value", "target", "raw"} and fig["value"] > 0 and fig["target"] == ">= 0.2"
