"""Analytic cases for max-min sharing, latency, loss and ordering (bandwidth factor 1).

Every message is delivered ``latency + OH`` after its last byte has crossed the links,
OH being the default per-message overhead; the expected times below include it.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import simpy
from fedsim.network.links import (
    DEFAULT_MESSAGE_OVERHEAD_S,
    DOWN,
    SIMGRID_BANDWIDTH_FACTOR,
    UP,
    DevicePaths,
    StarNetwork,
    unit_hash,
)
from fedsim.network.maxmin import mathis_rate, maxmin_rates, waterfill_level
from hypothesis import given, settings
from hypothesis import strategies as st

OH = DEFAULT_MESSAGE_OVERHEAD_S  # seconds added to every delivery
MB = 1e6  # bytes
MBps = 8e6  # bit/s in one MB/s


def dev(up_MBps=100.0, down_MBps=100.0, rtt_s=0.1, jitter=0.0, loss=0.0):
    return SimpleNamespace(
        up_bps=up_MBps * MBps, down_bps=down_MBps * MBps, rtt_s=rtt_s, jitter=jitter, loss=loss
    )


def star(devices, server_up_MBps=10.0, server_down_MBps=10.0, *, bf=1.0, lf=1.0, seed=0, oh=OH):
    env = simpy.Environment()
    paths = DevicePaths(devices, bandwidth_factor=bf, latency_factor=lf, message_overhead_s=oh)
    net = StarNetwork(env, paths, server_up_MBps * MBps, server_down_MBps * MBps, seed=seed)
    return env, net


def record(env, out, key=None):
    def cb(msg):
        out[msg.device if key is None else key(msg)] = env.now

    return cb


# -- the pure allocation -----------------------------------------------------------------


def test_maxmin_single_link_equal_split():
    rates = maxmin_rates([[0], [0], [0], [0]], [12.0])
    assert rates.tolist() == [3.0, 3.0, 3.0, 3.0]


def test_maxmin_textbook_example():
    # Bertsekas & Gallager fig. 6.8-style: link 0 (cap 1) shared by flows 0,1,2;
    # link 1 (cap 10) by flows 2,3. Flows 0..2 get 1/3, flow 3 the rest of link 1.
    rates = maxmin_rates([[0], [0], [0, 1], [1]], [1.0, 10.0])
    np.testing.assert_allclose(rates, [1 / 3, 1 / 3, 1 / 3, 10 - 1 / 3])


def test_maxmin_caps_and_unbounded_flows():
    rates = maxmin_rates([[0], [0], []], [10.0], caps=[1.0, math.inf, math.inf])
    assert rates.tolist() == [1.0, 9.0, math.inf]


def test_waterfill_matches_progressive_filling():
    rng = np.random.default_rng(1)
    for _ in range(50):
        caps = rng.uniform(0.1, 5.0, size=rng.integers(1, 30))
        capacity = float(rng.uniform(1.0, 60.0))
        level = waterfill_level(caps, capacity)
        expected = maxmin_rates([[0]] * len(caps), [capacity], caps=caps)
        np.testing.assert_allclose(np.minimum(caps, level), expected, rtol=1e-12)


def test_mathis_bound():
    assert mathis_rate(1460, 0.1, 0.0001) == pytest.approx(1460 / (0.1 * 0.01))
    assert mathis_rate(1460, 0.1, 0.0) == math.inf


# -- the incremental allocator against the reference -----------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    caps=st.lists(st.floats(0.1, 20.0), min_size=1, max_size=25),
    capacity=st.floats(1.0, 100.0),
    ops=st.lists(
        st.tuples(st.integers(0, 24), st.booleans(), st.sampled_from([0.0, 0.01, 0.3, 1.0, 1.7])),
        max_size=40,
    ),
)
def test_incremental_rates_equal_waterfilling(caps, capacity, ops):
    """After any sequence of starts, cancellations and finishes, rates are max-min fair."""
    devices = [dev(up_MBps=c) for c in caps]
    env, net = star(devices, server_up_MBps=capacity)
    link = net.links[UP]
    live = {}
    for who, start, wait in ops:
        who %= len(caps)
        if start and who not in live:
            live[who] = net.send(who, UP, int(1e13))  # long: never finishes in this test
        elif not start and who in live:
            net.cancel(live.pop(who))
        if wait > 0:
            env.run(until=env.now + wait)
        active = sorted(live)
        got = [net.rate(live[i]) for i in active]
        want = maxmin_rates(
            [[0]] * len(active), [capacity * MB], caps=[caps[i] * MB for i in active]
        )
        np.testing.assert_allclose(got, want, rtol=1e-9)
        assert link.n_uncapped + link.n_capped == len(active)


def test_many_flows_with_random_sizes_conserve_bytes():
    """1,000 flows of random sizes and caps: each finishes exactly when its bytes are through
    (rtt 0: delivered OH after the last byte)."""
    rng = np.random.default_rng(7)
    n = 1000
    caps = rng.uniform(0.001, 0.05, n)  # MB/s; Σ caps ≈ 25 > 10: the server link is contended
    sizes = rng.integers(1, 50_000, n)
    starts = np.sort(rng.uniform(0, 100, n))
    env, net = star([dev(up_MBps=c, rtt_s=0.0) for c in caps])
    done = {}

    def go():
        for i in range(n):
            yield env.timeout(starts[i] - env.now)
            net.send(i, UP, int(sizes[i]), record(env, done))

    env.process(go())
    env.run()
    assert len(done) == n
    done = {i: t - OH for i, t in done.items()}  # last byte through
    # Replay the piecewise-constant rates with the reference allocation.
    events = sorted({*starts.tolist(), *done.values()})
    sent = np.zeros(n)
    for a, b in zip(events, events[1:], strict=False):
        active = [i for i in range(n) if starts[i] <= a and done[i] > a]
        if not active:
            continue
        rates = maxmin_rates([[0]] * len(active), [10 * MB], caps=[caps[i] * MB for i in active])
        sent[active] += rates * (b - a)
    np.testing.assert_allclose(sent, sizes, rtol=1e-6)


# -- analytic transfer times ---------------------------------------------------------------


def test_one_flow_takes_latency_plus_size_over_bandwidth():
    env, net = star([dev(down_MBps=2.0, rtt_s=0.1)], server_down_MBps=100.0)
    out = {}
    net.send(0, DOWN, int(10 * MB), record(env, out))
    env.run()
    assert out[0] == pytest.approx(0.05 + OH + 10 / 2.0, rel=1e-12)


def test_n_equal_flows_through_the_server_link_take_n_times_as_long():
    n = 8
    env, net = star([dev(rtt_s=0.0)] * n, server_down_MBps=10.0)
    out = {}
    for i in range(n):
        net.send(i, DOWN, int(10 * MB), record(env, out))
    env.run()
    assert sorted(out) == list(range(n))
    for t in out.values():
        assert t == pytest.approx(n * 10 / 10.0 + OH, rel=1e-12)


def test_heterogeneous_uploads_share_max_min():
    """A (1 MB/s) and B (100 MB/s) send 10 MB into a 10 MB/s server link from t=0; C
    (100 MB/s) joins at t=1 with 10 MB. Latency 50 ms one way everywhere.

    0..1 s: A 1, B 9 MB/s (B has 1 MB left). From 1 s: A 1, B 4.5, C 4.5: B is done at
    1 + 1/4.5 = 1 + 2/9. Then C (9 MB left... 1 MB sent) gets 9 MB/s: done at 2 + 2/9.
    A runs at 1 MB/s throughout: 10 s. Each arrives 50 ms + OH after its last byte is sent.
    """
    env, net = star([dev(up_MBps=1.0), dev(up_MBps=100.0), dev(up_MBps=100.0)])
    out = {}
    net.send(0, UP, int(10 * MB), record(env, out))
    net.send(1, UP, int(10 * MB), record(env, out))

    def late():
        yield env.timeout(1.0)
        net.send(2, UP, int(10 * MB), record(env, out))

    env.process(late())
    env.run()
    assert out[1] == pytest.approx(1 + 2 / 9 + 0.05 + OH, rel=1e-6)
    assert out[2] == pytest.approx(2 + 2 / 9 + 0.05 + OH, rel=1e-6)
    assert out[0] == pytest.approx(10.05 + OH, rel=1e-6)


def test_cancel_frees_the_share_at_once():
    env, net = star([dev(rtt_s=0.0), dev(rtt_s=0.0)], server_up_MBps=10.0)
    out = {}
    net.send(0, UP, int(10 * MB), record(env, out))
    doomed = net.send(1, UP, int(10 * MB), record(env, out))

    def cut():
        yield env.timeout(1.0)
        net.cancel(doomed)

    env.process(cut())
    env.run()
    assert 1 not in out
    assert out[0] == pytest.approx(1.0 + 5 / 10.0 + OH, rel=1e-12)  # 5 MB at 5, then 5 at 10


def test_bandwidth_and_latency_factors():
    env, net = star([dev(down_MBps=2.0, rtt_s=0.1)], server_down_MBps=100.0, bf=0.97, lf=13.01)
    out = {}
    net.send(0, DOWN, int(10 * MB), record(env, out))
    env.run()
    # The latency factor scales the one-way latency only, not the per-message overhead.
    assert out[0] == pytest.approx(0.05 * 13.01 + OH + 10 / (2.0 * 0.97), rel=1e-12)
    assert SIMGRID_BANDWIDTH_FACTOR == 0.97


def test_loss_caps_the_rate_by_mathis():
    p, rtt = 0.01, 0.2
    env, net = star([dev(up_MBps=100.0, rtt_s=rtt, loss=p)], server_up_MBps=100.0)
    out = {}
    net.send(0, UP, int(1 * MB), record(env, out))
    env.run()
    rate = 1460 / (rtt * math.sqrt(p))  # bytes/s: 73 kB/s, far below the 100 MB/s links
    assert out[0] == pytest.approx(rtt / 2 + OH + 1 * MB / rate, rel=1e-12)


def test_message_overhead_is_added_to_every_message_in_both_directions():
    """t = latency + overhead + S / rate exactly, for uploads and downloads alike; the
    overhead is a delay after the last byte, so it neither occupies the link nor holds
    back the next message on the connection (back-to-back messages each pay it once)."""
    oh = 0.25  # a binary fraction: the sums below are exact
    env, net = star(
        [dev(up_MBps=2.0, down_MBps=4.0, rtt_s=0.5)], server_up_MBps=100.0,
        server_down_MBps=100.0, oh=oh,
    )  # fmt: skip
    out = {}
    net.send(0, DOWN, int(8 * MB), record(env, out, key=lambda m: ("down", m.nbytes)))
    net.send(0, UP, int(8 * MB), record(env, out, key=lambda m: ("up", m.nbytes)))
    net.send(0, UP, int(2 * MB), record(env, out, key=lambda m: ("up", m.nbytes)))
    env.run()
    assert out[("down", 8_000_000)] == 0.25 + 0.25 + 8 / 4.0
    assert out[("up", 8_000_000)] == 0.25 + 0.25 + 8 / 2.0
    assert out[("up", 2_000_000)] == 0.25 + 0.25 + (8 + 2) / 2.0  # sent right after the first
    # Without the overhead the same transfers take latency + S / rate.
    env, net = star([dev(up_MBps=2.0, rtt_s=0.5)], server_up_MBps=100.0, oh=0.0)
    out = {}
    net.send(0, UP, int(8 * MB), record(env, out))
    env.run()
    assert out[0] == 0.25 + 8 / 2.0


def test_message_overhead_must_be_finite_and_nonnegative():
    assert DevicePaths([dev(rtt_s=0.2)], message_overhead_s=0.01).delay == [0.1 + 0.01]
    for bad in (-1e-3, math.inf, math.nan):
        with pytest.raises(ValueError, match="message_overhead_s"):
            DevicePaths([dev()], message_overhead_s=bad)


# -- one connection: sequential transmission, in-order delivery ------------------------------


def test_messages_on_one_connection_are_sent_and_delivered_in_order():
    # Large jitter: the second message may draw a much smaller delay than the first.
    env, net = star([dev(down_MBps=1.0, rtt_s=0.1, jitter=5.0)], server_down_MBps=100.0)
    seen = []
    msgs = [net.send(0, DOWN, int(s * MB), lambda m: seen.append((m, env.now))) for s in (3, 1, 2)]
    env.run()
    assert [m for m, _ in seen] == msgs
    times = [t for _, t in seen]
    assert times == sorted(times)
    # Transmission is sequential on the connection: last bytes leave at 3, 4 and 6 s.
    assert [m.t_transmitted for m in msgs] == pytest.approx([3.0, 4.0, 6.0])
    for m in msgs:
        assert m.t_delivered >= m.t_transmitted + 0.05 + OH


def test_jitter_is_deterministic_and_nonnegative():
    def run(seed):
        env, net = star([dev(rtt_s=0.1, jitter=0.02)] * 20, server_down_MBps=1000.0, seed=seed)
        out = {}
        for i in range(20):
            net.send(i, DOWN, 1000, record(env, out))
        env.run()
        return [out[i] for i in range(20)]

    a, b, c = run(1), run(1), run(2)
    assert a == b
    assert a != c
    base = 0.05 + OH + 1000 / (100 * MB)
    assert all(t >= base - 1e-12 for t in a)


def test_unit_hash_is_uniform_enough():
    u = np.array([unit_hash(3, i) for i in range(20_000)])
    assert 0 < u.min() and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.01


def test_rounds_reuse_connection_objects_through_the_lent_free_list():
    # a population run draws new devices every round: connection objects must be recycled
    # through the free list, never kept per device (nothing may grow with the population)
    paths = DevicePaths([dev() for _ in range(1000)])
    spare: list = []
    seen: set[int] = set()
    times = []
    for devices in [range(0, 4), range(500, 504), range(996, 1000)]:
        env = simpy.Environment()
        net = StarNetwork(env, paths, 8e6, 8e6, spare=spare)
        got = []
        for d in devices:
            net.send(d, UP, 1000, lambda m, got=got: got.append((m.device, m.t_delivered)))
            net.send(d, DOWN, 500)
        env.run()
        seen |= {id(c) for c in net._conns.values()}
        net.close()
        assert sorted(d for d, _ in got) == list(devices)
        times.append([t for _, t in sorted(got)])
        assert len(spare) == 8  # this round's 4 devices x 2 directions, handed back
        assert all(c.n_sent == 0 and not c.queue and not c.active for c in spare)
    assert len(seen) == 8  # rounds 2 and 3 made no new connection objects
    assert times[0] == times[1] == times[2]  # identical devices, identical (reset) state


def test_call_later_runs_in_the_order_env_timeout_would():
    # call_later shares simpy's queue and key (time, priority, sequence): mixed with
    # timeouts and processes, equal times run first-scheduled-first, and values arrive
    from fedsim.network.links import call_later

    env = simpy.Environment()
    order = []
    call_later(env, 2.0, lambda ev: order.append(("a", env.now, ev._value)), "va")
    env.timeout(1.0).callbacks.append(lambda ev: order.append(("t", env.now, None)))
    call_later(env, 1.0, lambda ev: order.append(("b", env.now, ev._value)), "vb")
    env.timeout(2.0).callbacks.append(lambda ev: order.append(("u", env.now, None)))
    call_later(env, 0.0, lambda ev: order.append(("c", env.now, ev._value)))

    def proc():
        yield env.timeout(1.0)
        order.append(("p", env.now, None))

    env.process(proc())
    env.run()
    assert order == [
        ("c", 0.0, None),
        ("t", 1.0, None),
        ("b", 1.0, "vb"),
        ("p", 1.0, None),
        ("a", 2.0, "va"),
        ("u", 2.0, None),
    ]
    with pytest.raises(ValueError, match="negative delay"):
        call_later(env, -1.0, print)
