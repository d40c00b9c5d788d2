"""Device energy: the power catalog and joules integrated over client timelines."""

import dataclasses
import math

import pytest
from fedsim.network.availability import TraceAvailability
from fedsim.network.devices import (
    CATALOG,
    POWER_CATALOG,
    POWER_FIELDS,
    DeviceProfile,
    PowerModel,
    get_power,
    power_models,
)
from fedsim.network.energy import ENERGY_PARTS, client_energy, sum_energy, transfer_energy
from fedsim.network.links import DEFAULT_MESSAGE_OVERHEAD_S as OH
from fedsim.network.rounds import ClientJob, ClientTimeline, NetworkModel

INF = math.inf
MB = 1_000_000
LTE = POWER_CATALOG["phone-4g"]
NO_TAIL = dataclasses.replace(LTE, tail_w=0.0, tail_s=0.0, promo_w=0.0, promo_s=0.0)


def timeline(down=(0.0, 1.0), compute_end=None, up=None, accepted=True, reason=None, t_dropped=INF):
    """A ClientTimeline from phase intervals; missing phases are never reached."""
    t_down_start, t_down_end = down if down else (INF, INF)
    t_up_start, t_up_end = up if up else (INF, INF)
    return ClientTimeline(
        client_id=0,
        t_dispatch=0.0,
        t_down_start=t_down_start,
        t_down_end=t_down_end,
        t_compute_end=INF if compute_end is None else compute_end,
        t_up_start=t_up_start,
        t_up_end=t_up_end if accepted else INF,
        accepted=accepted,
        dropped=reason is not None,
        reason=reason,
        t_dropped=t_dropped,
    )


def model(devices, server_bps, availability=None):
    return NetworkModel(
        devices,
        server_bps,
        server_bps,
        availability,
        seed=0,
        bandwidth_factor=1.0,
        latency_factor=1.0,
    )


def device(up_bps=8e6, down_bps=20e6, rtt=0.0):
    return DeviceProfile("phone-4g", up_bps=up_bps, down_bps=down_bps, rtt_s=rtt, flops=1e9)


# ---- the catalog ---------------------------------------------------------------------------------


def test_every_device_profile_has_a_power_model_with_a_source_per_figure():
    assert set(POWER_CATALOG) == set(CATALOG)
    for name, p in POWER_CATALOG.items():
        assert p.name == name
        for f in POWER_FIELDS:
            assert p.source(f), f"{name}.{f} has no source"
            assert getattr(p, f) >= 0


def test_lte_figures_are_huang_et_al_2012():
    assert LTE.up_j_per_bit == pytest.approx(438.39e-3 / 1e6)
    assert LTE.down_j_per_bit == pytest.approx(51.97e-3 / 1e6)
    assert LTE.up_base_w == LTE.down_base_w == pytest.approx(1.28804)
    assert LTE.tail_s == pytest.approx(11.576)
    assert LTE.tail_w + LTE.idle_w == pytest.approx(1.0600)  # tail base, whole phone
    assert "MobiSys 2012" in LTE.source("up_j_per_bit")
    assert "438.39" in LTE.source("up_j_per_bit")


def test_overrides_replace_figures_and_their_sources():
    p = get_power("phone-4g", {"compute_w": 3.5, "idle_w": 0.2})
    assert p.compute_w == 3.5 and p.idle_w == 0.2
    assert p.source("compute_w") == "scenario override"
    assert p.up_base_w == LTE.up_base_w and p.source("up_base_w") == LTE.source("up_base_w")
    assert get_power("phone-4g") is LTE
    with pytest.raises(ValueError, match="unknown fields"):
        get_power("phone-4g", {"compute_watts": 3.0})
    with pytest.raises(ValueError, match="compute_w"):
        get_power("phone-4g", {"compute_w": -1.0})
    with pytest.raises(KeyError, match="no power model"):
        get_power("toaster")


def test_power_models_follow_the_population_by_profile_name():
    devices = [CATALOG["phone-3g"], CATALOG["laptop-wifi"], CATALOG["phone-3g"]]
    pms = power_models(devices, {"phone-3g": {"compute_w": 2.0}})
    assert [p.name for p in pms] == ["phone-3g", "laptop-wifi", "phone-3g"]
    assert pms[0] is pms[2] and pms[0].compute_w == 2.0
    assert pms[1] is POWER_CATALOG["laptop-wifi"]
    with pytest.raises(ValueError, match="not in the population"):
        power_models(devices, {"phone-5g": {"compute_w": 2.0}})


# ---- one transfer --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(POWER_CATALOG))
def test_a_transfer_at_constant_throughput_costs_power_times_time_plus_the_tail(name):
    p = POWER_CATALOG[name]
    r, nbytes = 5e6, 3 * MB  # bit/s, bytes
    t = 8 * nbytes / r
    e = client_energy(p, timeline(down=(0.0, t)), nbytes, 0, 0.0, t, down_bps=None)
    assert e["energy_down_j"] == pytest.approx((p.down_j_per_bit * r + p.down_base_w) * t)
    assert e["energy_down_j"] == pytest.approx(transfer_energy(p, "down", nbytes, t))
    # the client is dropped the moment the model arrives: nothing after the transfer...
    cut = client_energy(
        p,
        timeline(down=(0.0, t), accepted=False, reason="deadline", t_dropped=t),
        nbytes,
        0,
        0.0,
        t,
    )
    assert cut["energy_j"] == pytest.approx(e["energy_down_j"] + p.promo_w * p.promo_s)
    # ...while an accepted upload is followed by the full tail
    up = client_energy(p, timeline(down=None, up=(0.0, t)), 0, nbytes, 0.0, t)
    assert up["energy_up_j"] == pytest.approx((p.up_j_per_bit * r + p.up_base_w) * t)
    assert up["energy_tail_j"] == pytest.approx(p.promo_w * p.promo_s + p.tail_w * p.tail_s)
    assert up["energy_j"] == pytest.approx(up["energy_up_j"] + up["energy_tail_j"])


def test_one_client_alone_on_the_simulated_network_pays_alpha_r_plus_beta_for_b_over_r():
    r_down, r_up = 20e6, 8e6
    m = model([device(up_bps=r_up, down_bps=r_down)], server_bps=1e9)
    down, up, compute = 5 * MB, 2 * MB, 1.5
    end, (tl,) = m.run_sync_round(0.0, [ClientJob(0, down, compute, up)])
    e = client_energy(NO_TAIL, tl, down, up, compute, end)
    # A transfer lasts its bytes over the rate plus the per-message overhead (rtt 0): the
    # alpha part pays for the bytes, beta for the whole duration.
    assert e["energy_down_j"] == pytest.approx(
        LTE.down_j_per_bit * 8 * down + LTE.down_base_w * (8 * down / r_down + OH)
    )
    assert e["energy_up_j"] == pytest.approx(
        LTE.up_j_per_bit * 8 * up + LTE.up_base_w * (8 * up / r_up + OH)
    )
    assert e["energy_compute_j"] == pytest.approx(LTE.compute_w * compute)
    assert e["energy_idle_j"] == pytest.approx(0.0, abs=1e-12)
    assert e["energy_j"] == pytest.approx(sum(e[k] for k in ENERGY_PARTS))


def test_compute_energy_is_power_times_compute_time():
    for name, p in POWER_CATALOG.items():
        e = client_energy(
            p, timeline(down=(0.0, 1.0), compute_end=8.0, up=(8.0, 9.0)), 0, 0, 7.0, 9.0
        )
        assert e["energy_compute_j"] == pytest.approx(p.compute_w * 7.0), name


def test_a_transfer_slowed_by_sharing_costs_more_base_energy_than_alone():
    down = 5 * MB
    n = 5
    alone = model([device()], server_bps=20e6)
    shared = model([device()] * n, server_bps=20e6)  # five downloads share 20 Mbit/s
    end_a, (tl_a,) = alone.run_sync_round(0.0, [ClientJob(0, down, 1.0, 1000)])
    end_s, tls = shared.run_sync_round(0.0, [ClientJob(i, down, 1.0, 1000) for i in range(n)])
    tl_s = tls[0]
    t_alone = tl_a.t_down_end - tl_a.t_down_start
    t_shared = tl_s.t_down_end - tl_s.t_down_start
    assert t_shared - OH == pytest.approx(n * (t_alone - OH))  # the bytes take n times as long
    e_a = client_energy(LTE, tl_a, down, 1000, 1.0, end_a)
    e_s = client_energy(LTE, tl_s, down, 1000, 1.0, end_s)
    assert e_s["energy_down_j"] > e_a["energy_down_j"]
    # the bytes cost the same; the difference is beta over the extra time
    assert e_s["energy_down_j"] - e_a["energy_down_j"] == pytest.approx(
        LTE.down_base_w * (t_shared - t_alone)
    )


# ---- the round -----------------------------------------------------------------------------------


def test_an_accepted_client_idles_until_the_round_ends():
    tl = timeline(down=(0.0, 1.0), compute_end=3.0, up=(3.0, 4.0))
    e4 = client_energy(LTE, tl, MB, MB, 2.0, 4.0)
    e10 = client_energy(LTE, tl, MB, MB, 2.0, 10.0)
    assert e4["energy_idle_j"] == pytest.approx(0.0)
    assert e10["energy_idle_j"] == pytest.approx(LTE.idle_w * 6.0)
    for k in ("energy_compute_j", "energy_down_j", "energy_up_j", "energy_tail_j"):
        assert e10[k] == pytest.approx(e4[k])


def test_the_tail_is_cut_by_the_next_transfer_and_promotion_paid_after_a_long_pause():
    p = LTE
    short = client_energy(p, timeline(down=(0, 1), compute_end=3, up=(3, 4)), MB, MB, 2.0, 4.0)
    # tail after the download = the 2 s of compute, no second promotion; full tail after upload
    assert short["energy_tail_j"] == pytest.approx(
        p.promo_w * p.promo_s + p.tail_w * 2.0 + p.tail_w * p.tail_s
    )
    long_c = 30.0  # longer than the LTE tail: the radio went idle in between
    t_up = 1 + long_c
    e = client_energy(
        p, timeline(down=(0, 1), compute_end=t_up, up=(t_up, t_up + 1)), MB, MB, long_c, t_up + 1
    )
    assert e["energy_tail_j"] == pytest.approx(2 * (p.promo_w * p.promo_s + p.tail_w * p.tail_s))


def test_a_dropped_client_stops_consuming_at_t_dropped():
    p = LTE
    # dropped mid-upload at t = 5 (offline); the round itself ends much later
    tl = timeline(
        down=(0.0, 1.0),
        compute_end=3.0,
        up=(3.0, INF),
        accepted=False,
        reason="offline",
        t_dropped=5.0,
    )
    late = client_energy(p, tl, MB, 4 * MB, 2.0, 100.0, up_bps=8e6)
    early = client_energy(p, tl, MB, 4 * MB, 2.0, 5.0, up_bps=8e6)
    assert late == early
    assert late["energy_idle_j"] == 0.0
    # upload paid for 2 s: beta for the time, alpha on at most what the link could move
    assert late["energy_up_j"] == pytest.approx(p.up_base_w * 2.0 + p.up_j_per_bit * 8e6 * 2.0)
    # tail after the download cut by the upload; tail after the cut upload cut by the drop
    assert late["energy_tail_j"] == pytest.approx(p.promo_w * p.promo_s + p.tail_w * 2.0)
    # without the link rate, alpha is charged on the whole message (an upper bound)
    bound = client_energy(p, tl, MB, 4 * MB, 2.0, 5.0)
    assert bound["energy_up_j"] == pytest.approx(p.up_base_w * 2.0 + p.up_j_per_bit * 32e6)


def test_a_client_dropped_during_compute_pays_compute_until_the_drop():
    tl = timeline(down=(0.0, 1.0), accepted=False, reason="straggler", t_dropped=2.5)
    e = client_energy(NO_TAIL, tl, MB, MB, 10.0, 2.5)
    assert e["energy_compute_j"] == pytest.approx(NO_TAIL.compute_w * 1.5)
    assert e["energy_up_j"] == 0.0 and e["energy_idle_j"] == 0.0


def test_phases_never_reached_cost_nothing():
    tl = timeline(down=None, accepted=False, reason="offline", t_dropped=0.0)
    e = client_energy(LTE, tl, MB, MB, 1.0, 50.0)
    assert all(v == 0.0 for v in e.values())


def test_simulated_offline_drop_matches_t_dropped():
    # client 1 goes offline at t = 4, during its upload; client 0 finishes the round later
    avail = TraceAvailability({0: [(0, 1000)], 1: [(0, 4.0)]})
    m = model([device(), device()], server_bps=1e9, availability=avail)
    jobs = [ClientJob(0, MB, 3.0, 10 * MB), ClientJob(1, MB, 3.0, 10 * MB)]
    end, (tl0, tl1) = m.run_sync_round(0.0, jobs)
    assert tl0.accepted and tl1.reason == "offline" and tl1.t_dropped == pytest.approx(4.0)
    e1 = client_energy(NO_TAIL, tl1, MB, 10 * MB, 3.0, end, up_bps=8e6)
    busy = tl1.t_dropped - tl1.t_dispatch
    assert e1["energy_idle_j"] == 0.0
    assert (
        e1["energy_down_j"] + e1["energy_up_j"]
        < (NO_TAIL.down_base_w + NO_TAIL.up_base_w + NO_TAIL.up_j_per_bit * 8e6) * busy
        + NO_TAIL.down_j_per_bit * 8 * MB
    )
    e0 = client_energy(NO_TAIL, tl0, MB, 10 * MB, 3.0, end)
    total = sum_energy([e0, e1])
    assert total["energy_j"] == pytest.approx(e0["energy_j"] + e1["energy_j"])
    assert set(total) == {"energy_j", *ENERGY_PARTS}


def test_power_model_validates_and_rejects_bad_arguments():
    with pytest.raises(ValueError):
        PowerModel(
            "x",
            compute_w=1,
            up_j_per_bit=0,
            up_base_w=1,
            down_j_per_bit=0,
            down_base_w=INF,
            idle_w=0,
        )
    with pytest.raises(ValueError, match="round_end"):
        client_energy(LTE, timeline(), MB, MB, 1.0, INF)
    with pytest.raises(ValueError, match="direction"):
        transfer_energy(LTE, "sideways", 1, 1.0)
