"""Availability models: always, Markov on/off, traces (CSV, JSON, FedScale)."""

import json
import math

import numpy as np
import pytest
from fedsim.network.availability import (
    AlwaysOn,
    Availability,
    MarkovOnOff,
    TraceAvailability,
    from_fedscale,
    load_trace,
)


def test_always_on():
    a = AlwaysOn()
    assert isinstance(a, Availability)
    assert (
        a.is_online(3, 1e9) and a.next_offline(3, 5.0) == math.inf and a.next_online(3, 5.0) == 5.0
    )


def test_markov_stationary_fraction():
    m = MarkovOnOff(mean_on_s=30.0, mean_off_s=90.0, seed=4)
    assert m.stationary_online == 0.25
    # Across devices at one time, and across time for one device.
    at_t = np.mean([m.is_online(d, 500.0) for d in range(4000)])
    over_t = np.mean([m.is_online(7, t) for t in np.arange(0, 2e5, 13.0)])
    assert abs(at_t - 0.25) < 0.02
    assert abs(over_t - 0.25) < 0.03


def test_markov_is_deterministic_whatever_the_query_order():
    a = MarkovOnOff(mean_on_s=10.0, mean_off_s=5.0, seed=1)
    b = MarkovOnOff(mean_on_s=10.0, mean_off_s=5.0, seed=1)
    times = np.linspace(0, 5000, 301)
    fwd = [
        (a.is_online(d, t), a.next_offline(d, t), a.next_online(d, t))
        for d in range(5)
        for t in times
    ]
    for t in times[::-1]:  # far future first, other devices first
        for d in range(4, -1, -1):
            b.next_online(d, t)
    bwd = [
        (b.is_online(d, t), b.next_offline(d, t), b.next_online(d, t))
        for d in range(5)
        for t in times
    ]
    assert fwd == bwd
    c = MarkovOnOff(mean_on_s=10.0, mean_off_s=5.0, seed=2)
    assert fwd != [
        (c.is_online(d, t), c.next_offline(d, t), c.next_online(d, t))
        for d in range(5)
        for t in times
    ]


def test_markov_answers_are_consistent():
    m = MarkovOnOff(mean_on_s=10.0, mean_off_s=10.0, seed=0)
    for t in np.linspace(0, 1000, 97):
        if m.is_online(0, t):
            end = m.next_offline(0, t)
            assert end > t and m.is_online(0, end - 1e-9) and not m.is_online(0, end)
            assert m.next_online(0, t) == t
        else:
            assert m.next_offline(0, t) == t
            start = m.next_online(0, t)
            assert start > t and m.is_online(0, start) and not m.is_online(0, start - 1e-9)


def test_markov_without_off_time_is_always_on():
    m = MarkovOnOff(mean_on_s=10.0, mean_off_s=0.0, seed=0)
    assert m.is_online(2, 1e6) and m.next_offline(2, 1e6) == math.inf


def test_trace_intervals_are_half_open_and_merged():
    tr = TraceAvailability({0: [(5, 10), (0, 2), (9, 12)]})
    assert tr.is_online(0, 0) and not tr.is_online(0, 2) and tr.is_online(0, 11.9)
    assert tr.next_offline(0, 6) == 12 and tr.next_offline(0, 3) == 3
    assert tr.next_online(0, 3) == 5 and tr.next_online(0, 12) == math.inf
    assert not tr.is_online(1, 1) and tr.next_online(1, 0) == math.inf  # missing: offline
    on = TraceAvailability({}, missing="online")
    assert on.is_online(1, 1) and on.next_offline(1, 1) == math.inf


def test_trace_with_a_period_repeats_and_wraps():
    tr = TraceAvailability({0: [(0, 2), (8, 10)], 1: [(0, 10)]}, period=10)
    assert tr.is_online(0, 31) and not tr.is_online(0, 35) and tr.is_online(0, 39)
    assert tr.next_offline(0, 39) == 42  # [38, 40) continues into [40, 42)
    assert tr.next_online(0, 35) == 38
    assert tr.next_online(0, 43) == 48
    assert tr.next_offline(1, 123.0) == math.inf
    with pytest.raises(ValueError):
        TraceAvailability({0: [(0, 12)]}, period=10)


def test_trace_files(tmp_path):
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("client_id,start,end\n0,0,10\n1,5,6\n0,20,30\n")
    js_path = tmp_path / "t.json"
    js_path.write_text(json.dumps({"0": [[0, 10], [20, 30]], "1": [[5, 6]]}))
    for path in (csv_path, js_path):
        tr = load_trace(path)
        assert tr.devices == [0, 1]
        assert tr.is_online(0, 25) and not tr.is_online(0, 15) and tr.next_offline(1, 5.5) == 6
    bad = tmp_path / "bad.csv"
    bad.write_text("0,1,2\n0,x,3\n")
    with pytest.raises(ValueError, match="bad.csv:2"):
        load_trace(bad)
    with pytest.raises(ValueError):
        load_trace(tmp_path / "t.txt")


def test_fedscale_conversion():
    behave = {
        7: {"active": [0, 50], "inactive": [10, 60], "finish_time": 100},
        3: {"active": [20], "inactive": [30], "finish_time": 100},
    }
    tr = from_fedscale(behave)
    assert tr.devices == [0, 1]  # FedScale ids 3, 7 renumbered in sorted order
    assert tr.is_online(0, 125) and not tr.is_online(0, 135)
    assert tr.is_online(1, 255) and tr.next_offline(1, 255) == 260
