"""Synchronous rounds and the async session, analytic (bandwidth factor 1, no latency factor).

Every message (download or upload) is delivered ``L = RTT/2 + OH`` after its last byte has
crossed the links, OH being the default per-message overhead; the expected times include it.
"""

import math

import pytest
from fedsim.network.availability import AlwaysOn, MarkovOnOff, TraceAvailability
from fedsim.network.devices import CATALOG, DeviceProfile, build_population, compute_seconds
from fedsim.network.links import DEFAULT_MESSAGE_OVERHEAD_S as OH
from fedsim.network.rounds import ClientJob, ClientTimeline, NetworkModel

L = 0.05 + OH  # one-way delivery delay of every message with the default rtt of 0.1 s
MB = 1e6
MBps = 8e6


def prof(up=100.0, down=100.0, rtt=0.1, jitter=0.0, flops=1e9):
    return DeviceProfile(
        "t", up_bps=up * MBps, down_bps=down * MBps, rtt_s=rtt, flops=flops, jitter=jitter
    )


def model(devices, server_up=10.0, server_down=10.0, availability=None, seed=0, **kw):
    return NetworkModel(
        devices,
        server_up * MBps,
        server_down * MBps,
        availability,
        seed=seed,
        bandwidth_factor=1.0,
        latency_factor=1.0,
        **kw,
    )


def job(cid, down=10, compute=1.0, up=10):
    return ClientJob(cid, int(down * MB), compute, int(up * MB))


def test_one_client_round_is_latency_plus_transfer_plus_compute():
    m = model([prof(up=2.0, down=5.0, rtt=0.1)], server_up=100, server_down=100)
    end, (tl,) = m.run_sync_round(3.0, [job(0, down=10, compute=2.5, up=4)])
    assert tl.accepted and not tl.dropped and tl.reason is None
    assert tl.t_dispatch == tl.t_down_start == 3.0
    assert tl.t_down_end == pytest.approx(3.0 + L + 10 / 5.0)
    assert tl.t_compute_end == pytest.approx(tl.t_down_end + 2.5)
    assert tl.t_up_start == tl.t_compute_end
    assert tl.t_up_end == pytest.approx(tl.t_compute_end + L + 4 / 2.0)
    assert end == tl.t_up_end


def test_equal_clients_share_the_server_links():
    n = 5
    m = model([prof()] * n)
    end, tls = m.run_sync_round(0.0, [job(i) for i in range(n)])
    for tl in tls:
        assert tl.t_down_end == pytest.approx(L + n * 10 / 10.0)
        assert tl.t_up_end == pytest.approx(tl.t_compute_end + L + n * 10 / 10.0)
    assert end == pytest.approx(2 * L + 2 * n + 1.0)


def test_overcommit_accepts_the_first_k_and_cuts_the_stragglers():
    m = model([prof()] * 4)
    jobs = [job(i, compute=1.0 + 3 * i) for i in range(4)]  # uploads never overlap
    end, tls = m.run_sync_round(0.0, jobs, accept_first=2)
    # downloads: 4 x 10 MB over 10 MB/s -> 4 s + L; client i uploads alone for 1 s.
    arrivals = [4.0 + L + 1.0 + 3 * i + 1.0 + L for i in range(4)]
    assert [tl.accepted for tl in tls] == [True, True, False, False]
    assert [tl.reason for tl in tls] == [None, None, "straggler", "straggler"]
    assert tls[1].t_up_end == pytest.approx(arrivals[1])
    assert end == pytest.approx(arrivals[1])
    for tl in tls[2:]:
        assert tl.dropped and tl.t_dropped == pytest.approx(end) and tl.t_up_end == math.inf


def test_deadline_drops_late_updates_and_ends_the_round_at_the_deadline():
    m = model([prof()] * 3)
    jobs = [job(0, compute=0.0), job(1, compute=0.0), job(2, compute=100.0)]
    end, tls = m.run_sync_round(10.0, jobs, deadline_s=50.0)
    assert [tl.reason for tl in tls] == [None, None, "deadline"]
    assert tls[2].t_dropped == pytest.approx(60.0)
    assert end == pytest.approx(60.0)


def test_deadline_not_reached_ends_at_the_last_arrival():
    m = model([prof()] * 2)
    end, tls = m.run_sync_round(0.0, [job(0), job(1)], deadline_s=1000.0)
    assert all(tl.accepted for tl in tls)
    assert end == max(tl.t_up_end for tl in tls) < 1000.0


def test_a_device_going_offline_while_computing_drops_out():
    # Both download at 5 MB/s (delivered at 2 + L); client 1 goes offline at t=3, while
    # computing, so its upload never starts and client 0 uploads alone.
    trace = TraceAvailability({0: [(0, 1e9)], 1: [(0, 3.0)]})
    m = model([prof()] * 2, availability=trace)
    end, (a, b) = m.run_sync_round(0.0, [job(0), job(1)])
    assert b.dropped and b.reason == "offline" and b.t_dropped == pytest.approx(3.0)
    assert b.t_down_end == pytest.approx(2.0 + L) and b.t_compute_end == math.inf
    assert not b.accepted and b.t_up_end == math.inf
    assert a.accepted
    assert a.t_up_end == pytest.approx(2.0 + L + 1.0 + 1.0 + L)
    assert end == a.t_up_end


def test_offline_device_frees_the_link_for_others():
    trace = TraceAvailability({0: [(0, 1e9)], 1: [(0, 1.0)]})
    m = model([prof()] * 2, availability=trace)
    _, (a, b) = m.run_sync_round(0.0, [job(0), job(1)])
    assert b.reason == "offline"
    # A: 5 MB/s for 1 s, then the whole 10 MB/s for the remaining 5 MB.
    assert a.t_down_end == pytest.approx(1.0 + 0.5 + L)


def test_offline_at_dispatch_and_after_the_update_left():
    # 0 offline from the start; 1 goes offline while its update is propagating (last byte
    # sent at 1 + L + 1 + 1 = 3.0515, delivered 3.103): it still counts.
    trace = TraceAvailability({0: [(5.0, 10.0)], 1: [(0.0, 3.07)]})
    m = model([prof()] * 2, availability=trace)
    end, (a, b) = m.run_sync_round(0.0, [job(0), job(1)])
    assert a.reason == "offline" and a.t_dropped == 0.0 and a.t_down_start == math.inf
    assert b.accepted and b.t_up_end == pytest.approx(3.0 + 2 * L)
    assert end == b.t_up_end


def test_round_is_deterministic_and_independent_of_job_order():
    devices = build_population(
        300,
        [
            {"profile": "phone-4g", "share": 0.6, "spread": 0.4},
            {"profile": "phone-3g", "share": 0.4},
        ],
        5,
    )
    avail = MarkovOnOff(mean_on_s=60.0, mean_off_s=20.0, seed=3)
    jobs = [
        ClientJob(i, 1_000_000, compute_seconds(5e9, devices[i]), 500_000 + 1000 * i)
        for i in range(300)
    ]

    def run(order, seed=1):
        m = NetworkModel(devices, 1e8, 1e8, avail, seed=seed)
        return m.run_sync_round(7.0, order, accept_first=200)

    first = run(jobs)
    assert run(jobs) == first
    assert run(list(reversed(jobs))) == first
    assert run(jobs, seed=2) != first  # jitter draws differ
    end, tls = first
    assert [tl.client_id for tl in tls] == list(range(300))
    assert 0 < sum(tl.accepted for tl in tls) <= 200
    assert {tl.reason for tl in tls} <= {None, "offline", "straggler"}


def test_rounds_do_not_depend_on_earlier_calls():
    m = model([prof(jitter=0.01)] * 3)
    jobs = [job(i) for i in range(3)]
    a = m.run_sync_round(100.0, jobs)
    m.run_sync_round(0.0, jobs[:2])
    assert m.run_sync_round(100.0, jobs) == a


def test_empty_round_and_bad_input():
    m = model([prof()])
    assert m.run_sync_round(4.0, []) == (4.0, [])
    with pytest.raises(ValueError):
        m.run_sync_round(0.0, [job(0), job(0)])
    with pytest.raises(ValueError):
        m.run_sync_round(0.0, [job(1)])
    with pytest.raises(ValueError):
        m.run_sync_round(0.0, [job(0)], accept_first=0)


def test_online_clients_and_compute_seconds():
    trace = TraceAvailability({0: [(0, 10)], 2: [(5, 10)]})
    m = model([prof(flops=2e9)] * 3, availability=trace)
    assert m.online_clients(1.0) == [0]
    assert m.online_clients(6.0) == [0, 2]
    assert m.compute_seconds(1, 4e9) == 2.0
    assert compute_seconds(4e9, CATALOG["phone-4g"]) == 4e9 / CATALOG["phone-4g"].flops


# -- asynchronous session ---------------------------------------------------------------------


def test_async_single_client_matches_the_sync_round():
    m = model([prof(up=2.0, down=5.0)], server_up=100, server_down=100)
    _, (sync,) = m.run_sync_round(0.0, [job(0, down=10, compute=2.5, up=4)])
    s = m.async_session(0.0)
    bound = s.dispatch(0, 0.0, int(10 * MB), 2.5)
    assert bound <= sync.t_up_end
    assert s.next_arrival() is None and s.waiting_for() == [0]  # needs the update size
    s.complete(0, int(4 * MB))
    tl = s.next_arrival()
    assert isinstance(tl, ClientTimeline) and tl.accepted
    assert tl.t_up_end == pytest.approx(sync.t_up_end)
    assert s.next_arrival() is None and s.outstanding() == []


def test_message_overhead_in_sync_rounds_and_async_sessions_alike():
    """Both messages of a trip pay latency + overhead, in a sync round and in FedBuff's
    session; the async lower bound counts the overhead too (exact for an empty update)."""
    m = model(
        [prof(up=2.0, down=5.0, rtt=0.5)] * 2, server_up=100, server_down=100,
        message_overhead_s=0.25,
    )  # fmt: skip
    d = 0.25 + 0.25  # one-way latency + overhead, per message
    _, (sync,) = m.run_sync_round(0.0, [job(0, down=10, compute=1.0, up=4)])
    assert sync.t_down_end == d + 10 / 5.0
    assert sync.t_up_end == d + 10 / 5.0 + 1.0 + d + 4 / 2.0
    s = m.async_session(0.0)
    assert s.dispatch(0, 0.0, int(10 * MB), 1.0) == d + 2.0 + 1.0 + d  # bound: no up bytes yet
    assert s.dispatch(1, 0.0, int(10 * MB), 1.0) == d + 2.0 + 1.0 + d
    s.complete(0, int(4 * MB))
    s.complete(1, 0)
    first, second = s.next_arrival(), s.next_arrival()
    assert (first.client_id, first.t_up_end) == (1, d + 2.0 + 1.0 + d)  # the bound, exactly
    assert (second.client_id, second.t_up_end) == (0, sync.t_up_end)


def _fedbuff(m, complete_early, rounds=12):
    """A FedBuff-like driver: keep 3 clients in flight; replace each arrival at its time."""
    s = m.async_session(0.0)
    sizes = {cid: int((1 + cid) * MB) for cid in range(6)}
    nxt = 0
    log = []

    def send(cid, t):
        s.dispatch(cid, t, int(5 * MB), 0.5 + 0.25 * cid)
        if complete_early:
            s.complete(cid, sizes[cid])

    for _ in range(3):
        send(nxt % 6, 0.0)
        nxt += 1
    while len(log) < rounds:
        tl = s.next_arrival()
        if tl is None:
            for cid in s.waiting_for():
                s.complete(cid, sizes[cid])
            continue
        log.append(tl)
        while (nxt % 6) in s.outstanding():
            nxt += 1
        send(nxt % 6, tl.t_up_end if tl.accepted else tl.t_dropped)
        nxt += 1
    return log


def test_async_results_do_not_depend_on_when_complete_is_called():
    m = model([prof(up=4.0, jitter=0.01)] * 6, server_up=6.0, server_down=8.0)
    early, late = _fedbuff(m, True), _fedbuff(m, False)
    assert early == late
    times = [tl.t_up_end for tl in early]
    assert times == sorted(times)  # events come in simulated-time order


def test_async_offline_drop_is_reported_in_order():
    trace = TraceAvailability({0: [(0, 1e9)], 1: [(0, 2.0)]})
    m = model([prof()] * 2, availability=trace)
    s = m.async_session()
    s.dispatch(0, 0.0, int(10 * MB), 1.0)
    s.dispatch(1, 0.0, int(10 * MB), 1.0)
    first = s.next_arrival()
    assert first.client_id == 1 and first.reason == "offline" and first.t_dropped == 2.0
    s.complete(1, 100)  # too late: ignored
    assert s.next_arrival() is None and s.waiting_for() == [0]
    s.complete(0, int(1 * MB))
    second = s.next_arrival()
    assert second.client_id == 0 and second.accepted
    with pytest.raises(ValueError):
        s.dispatch(1, 0.5, 10, 1.0)  # simulated time has passed 0.5


def test_async_cancel_and_future_dispatch():
    m = model([prof()] * 2)
    s = m.async_session(0.0)
    s.dispatch(0, 0.0, 1000, 1.0)
    s.dispatch(1, 5.0, 1000, 1.0)  # starts later
    with pytest.raises(ValueError):
        s.dispatch(1, 6.0, 1000, 1.0)  # already in flight
    s.complete(1, 1000)
    s.cancel(0)
    tl = s.next_arrival()
    assert tl.client_id == 1 and tl.t_down_start == 5.0
    assert s.next_arrival() is None


def test_network_model_defaults():
    m = NetworkModel([CATALOG["phone-4g"]], 1e9, 1e9, seed=0)
    assert isinstance(m.availability, AlwaysOn)
    assert m.paths.bandwidth_factor == 0.956 and m.paths.latency_factor == 1.0
    assert m.paths.message_overhead_s == OH == 1.5e-3
    assert m.paths.delay == [CATALOG["phone-4g"].rtt_s / 2 + OH]


def test_an_update_arriving_exactly_at_the_deadline_counts():
    # 1 s down + 0.25 s overhead, 1 s up + 0.25 s: exact binary sums, arriving at 2.5.
    m = model([prof(rtt=0.0)], server_up=10, server_down=10, message_overhead_s=0.25)
    end, (tl,) = m.run_sync_round(0.0, [job(0, compute=0.0)], deadline_s=2.5)
    assert tl.t_up_end == 2.5 and tl.accepted and end == 2.5


def test_a_round_frees_itself_without_the_cyclic_gc():
    import gc

    devices = build_population(200, [{"profile": "phone-4g", "share": 1.0, "spread": 0.3}], 0)
    m = NetworkModel(devices, 1e8, 1e8, seed=0)
    jobs = [ClientJob(i, 100_000, 1.0, 50_000) for i in range(200)]
    gc.collect()
    m.run_sync_round(0.0, jobs, accept_first=150)
    assert gc.collect() < 20  # only simpy's Environment itself (a handful of objects)


def test_simultaneous_arrivals_beyond_the_quorum_are_stragglers():
    m = model([prof()] * 3)
    end, tls = m.run_sync_round(0.0, [job(i) for i in range(3)], accept_first=1)
    assert [tl.reason for tl in tls] == [None, "straggler", "straggler"]
    assert tls[1].t_dropped == end == tls[0].t_up_end


def test_a_failed_round_leaves_the_model_usable():
    class Flaky(AlwaysOn):
        calls = 0

        def next_offline(self, device, t):
            Flaky.calls += 1
            if Flaky.calls == 3:
                raise RuntimeError("trace backend down")
            return math.inf

    jobs = [job(i) for i in range(4)]
    m = model([prof()] * 4, availability=Flaky())
    with pytest.raises(RuntimeError):
        m.run_sync_round(0.0, jobs)  # fails after two clients started their downloads
    assert m.run_sync_round(0.0, jobs) == model([prof()] * 4).run_sync_round(0.0, jobs)


def test_scenario_network_keys_reach_the_model():
    from fedsim.runtime.netbuild import build_network
    from fedsim.scenario.load import validate_doc

    doc = {"network": {"message_overhead": "3ms", "bandwidth_factor": 0.9}}
    paths = build_network(validate_doc(doc)).model.paths
    assert paths.message_overhead_s == pytest.approx(3e-3)
    assert paths.bandwidth_factor == 0.9
    assert paths.delay == pytest.approx([lat + 3e-3 for lat in paths.latency])
    default = build_network(validate_doc({})).model.paths
    assert (default.bandwidth_factor, default.message_overhead_s) == (0.956, OH)
