"""Device catalog and population building."""

import dataclasses
from collections import Counter

import numpy as np
import pytest
from fedsim.network.devices import (
    CATALOG,
    DeviceProfile,
    MixEntry,
    allocate_counts,
    build_population,
    compute_seconds,
    get_profile,
)

REQUIRED = {
    "phone-3g",
    "phone-4g",
    "phone-5g",
    "laptop-wifi",
    "iot-ltem",
    "iot-nbiot",
    "edge-ethernet",
}
FIGURES = ("up_bps", "down_bps", "rtt_s", "flops", "jitter", "loss")


def test_catalog_has_every_required_profile_with_a_source_per_figure():
    assert REQUIRED <= set(CATALOG)
    for name, p in CATALOG.items():
        assert p.name == name and p.description
        for f in FIGURES:
            assert p.source(f), f"{name}.{f} has no source"


def test_catalog_orders_of_magnitude():
    c = CATALOG
    assert c["phone-3g"].down_bps < c["phone-4g"].down_bps < c["phone-5g"].down_bps
    assert c["iot-nbiot"].up_bps < c["iot-ltem"].up_bps < c["phone-3g"].up_bps
    assert c["edge-ethernet"].down_bps == 1e9
    assert c["iot-nbiot"].rtt_s > c["phone-3g"].rtt_s > c["phone-5g"].rtt_s
    with pytest.raises(KeyError, match="phone-4g"):
        get_profile("phone-6g")


def test_profile_validation():
    with pytest.raises(ValueError, match="up_bps"):
        DeviceProfile("x", up_bps=0, down_bps=1, rtt_s=0.1, flops=1)
    with pytest.raises(ValueError, match="loss"):
        DeviceProfile("x", up_bps=1, down_bps=1, rtt_s=0.1, flops=1, loss=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        CATALOG["phone-4g"].up_bps = 1.0


@pytest.mark.parametrize(
    "n, shares, expected",
    [
        (10, [0.55, 0.45], [6, 4]),  # 5.5 / 4.5: tie on .5 goes to the first
        (10, [1, 1, 1], [4, 3, 3]),
        (7, [0.5, 0.3, 0.2], [4, 2, 1]),  # 3.5, 2.1, 1.4 -> floors 3,2,1, leftover to .5
        (0, [0.3, 0.7], [0, 0]),
        (1000, [0.1, 0.4, 0.2, 0.2, 0.05, 0.05], [100, 400, 200, 200, 50, 50]),
    ],
)
def test_largest_remainder(n, shares, expected):
    assert allocate_counts(n, shares) == expected


def test_allocate_counts_always_sums_to_n():
    rng = np.random.default_rng(0)
    for _ in range(200):
        shares = rng.dirichlet(np.ones(rng.integers(1, 8))).tolist()
        n = int(rng.integers(0, 500))
        counts = allocate_counts(n, shares)
        assert sum(counts) == n
        assert all(abs(c - n * s) < 1 for c, s in zip(counts, shares, strict=True))
    with pytest.raises(ValueError):
        allocate_counts(5, [0, 0])


MIX = [
    {"profile": "phone-4g", "share": 0.5, "spread": 0.3},
    {"profile": "laptop-wifi", "share": 0.3, "overrides": {"rtt_s": 0.04}},
    MixEntry("iot-nbiot", 0.2),
]


def test_population_is_exact_deterministic_and_shuffled():
    a = build_population(101, MIX, seed=9)
    assert a == build_population(101, MIX, seed=9)
    assert a != build_population(101, MIX, seed=10)
    counts = Counter(p.name for p in a)
    assert counts == {"phone-4g": 51, "laptop-wifi": 30, "iot-nbiot": 20}  # 50.5, 30.3, 20.2
    names = [p.name for p in a]
    assert names != sorted(names, key=["phone-4g", "laptop-wifi", "iot-nbiot"].index)
    assert build_population(101, MIX, seed=np.random.default_rng(9)) == a


def test_overrides_and_spread():
    pop = build_population(2000, MIX, seed=1)
    wifi = [p for p in pop if p.name == "laptop-wifi"]
    assert all(p.rtt_s == 0.04 and p.down_bps == CATALOG["laptop-wifi"].down_bps for p in wifi)
    phones = [p for p in pop if p.name == "phone-4g"]
    base = CATALOG["phone-4g"]
    logs = np.log([p.up_bps / base.up_bps for p in phones])
    assert abs(np.median(logs)) < 0.05 and abs(logs.std() - 0.3) < 0.03
    assert all(p.rtt_s == base.rtt_s for p in phones)  # spread only touches rates and FLOP/s
    iot = [p for p in pop if p.name == "iot-nbiot"]
    assert all(p == CATALOG["iot-nbiot"] for p in iot)


def test_population_errors():
    with pytest.raises(ValueError, match="unknown override"):
        build_population(5, [{"profile": "phone-4g", "share": 1, "overrides": {"speed": 1}}], 0)
    with pytest.raises(KeyError):
        build_population(5, [{"profile": "nope", "share": 1}], 0)
    with pytest.raises(ValueError):
        build_population(5, [], 0)


def test_compute_seconds():
    p = CATALOG["phone-4g"]
    assert compute_seconds(3 * p.flops, p) == pytest.approx(3.0)


def test_describe_profiles_lists_the_catalog():
    from fedsim.network.devices import describe_profiles

    rows = dict(describe_profiles())
    assert set(rows) == set(CATALOG)
    assert "25 Mbit/s down" in rows["phone-4g"] and "RTT 50 ms" in rows["phone-4g"]
