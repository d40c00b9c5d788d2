"""The flow-level network model against real TCP on shaped loopback (benchmarks/tcp_harness.py).

Root only: each test case runs in a private network namespace whose loopback is shaped with
htb (server link = parent class, one child class per device), sends real fedsim messages
over ZeroMQ tcp and compares completion times with fedsim's model at its default settings
(bandwidth factor, latency = half the measured round trip, per-message overhead). The full sweep is
``benchmarks/netns_sweep.py``; docs/network-validation.md has its results.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "tcp_harness.py"


def _load_harness():
    """The harness is a benchmarks/ script, not a library module: load it by path."""
    spec = importlib.util.spec_from_file_location("tcp_harness", HARNESS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


harness = _load_harness()
Case, Namespace, Transfer = harness.Case, harness.Namespace, harness.Transfer
run_case = harness.run_case

REASON = harness.unavailable_reason()

pytestmark = [
    pytest.mark.netns,
    pytest.mark.slow,
    pytest.mark.skipif(REASON is not None, reason=f"netns validation skipped: {REASON}"),
]

MBIT = 1e6
TOL = 0.10  # the bound for the simple cases


@pytest.fixture(scope="module")
def ns():
    with Namespace() as space:
        yield space
    assert space.name not in harness._netns_names(), "namespace left behind"


def _check(result, tol=TOL):
    for t, s, m, e in zip(
        result.case.transfers, result.simulated_s, result.measured_s, result.errors, strict=True
    ):
        assert abs(e) <= tol, (
            f"{result.case.name} device {t.device}: simulated {s:.3f} s, measured {m:.3f} s "
            f"({e * 100:+.1f} %, load {result.extra['load'][0]:.1f})"
        )


def test_single_flow(ns):
    case = Case("single", 1e9, (20 * MBIT,), (Transfer(0, 0.0, 3_000_000),))
    r = run_case(ns, case)
    _check(r)
    # The model's time is the byte count over the usable rate: ~1.25 s here.
    assert 1.1 < r.measured_s[0] < 1.5


def test_small_message_on_a_fast_link(ns):
    # 0.1 MB at 100 Mbit/s: ~10 ms in all, where the per-message overhead matters most
    # (without it the model was ~17 % fast here); issue 19's worst-case bound. A stall of
    # this loaded 2-CPU machine's scheduler can only stretch a 10 ms measurement, never
    # shorten it, so the fastest of five sends is the transfer's own time; it is held to
    # the bound (a model without the overhead misses it on every send).
    case = Case("small-fast", 1e9, (100 * MBIT,), (Transfer(0, 0.0, 100_000),))
    runs = [run_case(ns, case) for _ in range(5)]
    fastest = min(runs, key=lambda r: r.measured_s[0])
    errors = sorted(r.errors[0] for r in runs)
    assert abs(fastest.errors[0]) <= 0.15, f"errors {[f'{e * 100:+.1f} %' for e in errors]}"


def test_fair_share_server_bottleneck(ns):
    # 4 devices behind a 40 Mbit/s server link; one capped below its fair share (8 < 10):
    # max-min gives it 8 and the other three (40 - 8) / 3 each until it finishes.
    case = Case(
        "fair-4",
        40 * MBIT,
        (100 * MBIT, 60 * MBIT, 30 * MBIT, 8 * MBIT),
        tuple(Transfer(i, 0.0, 2_000_000) for i in range(4)),
    )
    r = run_case(ns, case)
    _check(r)
    # The three uncapped flows finish together, before the capped one.
    fast = r.measured_s[:3]
    assert max(fast) - min(fast) < 0.1 * min(fast)
    assert r.measured_s[3] > max(fast)


def test_staggered_heterogeneous(ns):
    # 6 devices of 2-100 Mbit/s, staggered, sharing a 50 Mbit/s server link.
    rates = (2 * MBIT, 5 * MBIT, 12 * MBIT, 25 * MBIT, 60 * MBIT, 100 * MBIT)
    sizes = (150_000, 400_000, 1_000_000, 1_500_000, 2_500_000, 3_000_000)
    starts = (0.0, 0.1, 0.2, 0.4, 0.6, 0.8)
    case = Case(
        "stagger-6",
        50 * MBIT,
        rates,
        tuple(Transfer(i, s, b) for i, (s, b) in enumerate(zip(starts, sizes, strict=True))),
    )
    _check(run_case(ns, case))


def test_namespace_removed_on_error():
    space = Namespace()
    with pytest.raises(RuntimeError):
        with space:
            name = space.name
            assert name in harness._netns_names()
            space.tc("qdisc", "add", "dev", "lo", "root", "bogus-qdisc")
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert name not in listed
