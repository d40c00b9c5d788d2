"""The benchmark suite runs on tiny sizes and produces every figure (no timing is asserted)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "benchmarks" / "run.py"

_spec = importlib.util.spec_from_file_location("fedsim_benchmarks_run", RUN)
suite = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(suite)

FIGURES = [
    "overhead_inproc",
    "workers2_efficiency",
    "async_workers2_efficiency",
    "encode_q4_vs_memcpy",
    "decode_q4_vs_memcpy",
    "encode_q4_stochastic_vs_memcpy",
    "encode_top1pct_ef_vs_memcpy",
    "wire_efficiency",
    "transport_vs_raw_zmq",
    "des_events_per_s",
    "population_100k_rss",
    "flower_vs_fedsim",
    "batched_vs_sequential",
]


def test_every_performance_figure_has_a_benchmark():
    assert sorted(suite.FIGURES) == sorted(FIGURES)


@pytest.mark.parametrize(
    "target,value,met",
    [("<= 1.1", 1.05, True), ("<= 1.1", 1.2, False), (">= 0.85", 0.9, True), ("< 1.0", 1.0, False)],
)
def test_targets(target, value, met):
    assert suite.is_met(value, target, {}) is met
    assert suite.is_met(None, target, {}) is None


def test_bare_number_target_takes_direction_from_raw():
    assert suite.is_met(0.3, 0.2, {"direction": ">="}) is True
    assert suite.is_met(0.1, 0.2, {"direction": ">="}) is False


def test_only_selects_by_bench_or_figure():
    assert suite.select(["wire_efficiency", "des"]) == ["codecs", "des"]
    with pytest.raises(SystemExit):
        suite.select(["nope"])


@pytest.mark.slow
@pytest.mark.multiprocess
def test_quick_suite_produces_every_figure(tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["quick"] is True and doc["machine"]["cores"] >= 1 and doc["command"]
    assert set(doc["figures"]) == set(FIGURES)
    for name, fig in doc["figures"].items():
        assert "error" not in fig, (name, fig.get("traceback"))
        if fig.get("skipped"):
            assert name == "flower_vs_fedsim" or "bench_des" in fig["skipped"], (name, fig)
            continue
        assert isinstance(fig["value"], float) and fig["value"] > 0, (name, fig)
        assert fig["met"] in (True, False) and fig["raw"], name
    for name in FIGURES:
        assert name in proc.stdout  # the table names every figure
    pop = doc["figures"]["population_100k_rss"]["raw"]
    assert pop["disk_equals_memory"] is True
    assert doc["figures"]["overhead_inproc"]["raw"]["same_model_sha256"] is True
