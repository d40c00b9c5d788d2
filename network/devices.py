"""Device profiles (links, latency, compute speed) with their public sources, and populations.

All numbers are plain SI floats: bit/s, seconds, FLOP/s. The scenario layer converts units
("20Mbit/s") before calling in. Catalog figures are round values inside the ranges the
cited sources report; where a figure is derived (peak FLOP/s × an assumed utilisation) the
source says so. docs/network-model.md has the table.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = [
    "DeviceProfile",
    "MixEntry",
    "CATALOG",
    "get_profile",
    "describe_profiles",
    "allocate_counts",
    "build_population",
    "compute_seconds",
]


@dataclass(frozen=True)
class DeviceProfile:
    """One kind of device: its links, path latency, compute speed and where the numbers come from.

    ``jitter`` is the mean extra one-way delay in seconds (exponentially distributed per
    message); ``loss`` the packet loss probability that bounds TCP throughput (Mathis);
    ``latency_s`` overrides the one-way latency, which is otherwise ``rtt_s / 2``.
    ``sources`` pairs a field name with the public source of its value.
    """

    name: str
    up_bps: float
    down_bps: float
    rtt_s: float
    flops: float
    jitter: float = 0.0
    loss: float = 0.0
    description: str = ""
    sources: tuple[tuple[str, str], ...] = ()
    latency_s: float | None = None

    def __post_init__(self) -> None:
        for f in ("up_bps", "down_bps", "flops"):
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and 0 < v < math.inf):
                raise ValueError(
                    f"device profile {self.name!r}: {f} must be > 0 and finite, got {v!r}"
                )
        for f in ("rtt_s", "jitter"):
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and 0 <= v < math.inf):
                raise ValueError(
                    f"device profile {self.name!r}: {f} must be >= 0 and finite, got {v!r}"
                )
        if not (isinstance(self.loss, (int, float)) and 0 <= self.loss < 1):
            raise ValueError(
                f"device profile {self.name!r}: loss must be in [0, 1), got {self.loss!r}"
            )
        if self.latency_s is not None and not 0 <= self.latency_s < math.inf:
            raise ValueError(
                f"device profile {self.name!r}: latency_s must be >= 0, got {self.latency_s!r}"
            )

    def source(self, field: str) -> str | None:
        """The public source given for ``field``, if any."""
        for name, text in self.sources:
            if name == field:
                return text
        return None


def compute_seconds(flops: float, device: DeviceProfile) -> float:
    """Simulated training time: counted FLOPs divided by the device's effective FLOP/s."""
    if flops < 0:
        raise ValueError(f"FLOP count must be >= 0, got {flops}")
    return flops / device.flops


M = 1e6
G = 1e9

_OPENSIGNAL_2019 = (
    "OpenSignal, 'The State of Mobile Network Experience' (May 2019), "
    "opensignal.com/reports: per-country 3G/4G download, upload and latency"
)
_OPENSIGNAL_LTE = "OpenSignal, 'The State of LTE' (Feb 2018), opensignal.com/reports"
_OOKLA_INDEX = (
    "Ookla, Speedtest Global Index, speedtest.net/global-index (mobile and fixed medians)"
)
_OOKLA_5G = "Ookla, Speedtest Intelligence 5G analyses, ookla.com/articles (5G median speeds)"
_GSMA_LTEM = (
    "GSMA, 'LTE-M Deployment Guide to Basic Feature Set Requirements' (2019): Cat-M1 "
    "(3GPP Rel-13, TS 36.306) peak 1 Mbit/s; half-duplex ~300 kbit/s DL, ~375 kbit/s UL"
)
_GSMA_NBIOT = (
    "GSMA, 'NB-IoT Deployment Guide to Basic Feature Set Requirements' (2019): Cat-NB1 "
    "(3GPP Rel-13, TS 36.306) peak ~26 kbit/s DL, ~62.5 kbit/s UL (multi-tone)"
)
_TR45820 = (
    "3GPP TR 45.820 (Cellular system support for ultra-low complexity and low throughput "
    "IoT): latency target <= 10 s; 2 s RTT is our assumption inside it"
)
_UTIL = "x ~10% utilisation for on-device training (assumption; AI-Benchmark, Ignatov et al., ICCVW 2019, shows NN throughput far below peak)"


def _p(name: str, description: str, **figures: tuple[float, str]) -> DeviceProfile:
    values = {k: v for k, (v, _) in figures.items()}
    sources = tuple((k, s) for k, (_, s) in figures.items())
    return DeviceProfile(name=name, description=description, sources=sources, **values)


_PROFILES = [
    _p(
        "phone-3g",
        "Low-end phone (4x Cortex-A53) on 3G/HSPA",
        up_bps=(1 * M, _OPENSIGNAL_2019 + "; 3G uploads around 1 Mbit/s"),
        down_bps=(3 * M, _OPENSIGNAL_2019 + "; 3G downloads of 1-8 Mbit/s"),
        rtt_s=(0.150, _OPENSIGNAL_2019 + "; 3G latency 100-200 ms"),
        jitter=(0.020, "assumption: tens of ms of variation on 3G"),
        loss=(0.0, "link-layer retransmission (RLC/HARQ) hides radio loss from TCP"),
        flops=(
            2 * G,
            "4 cores x 1.4 GHz x 4 FP32 FLOP/cycle (Arm Cortex-A53 TRM) = 22 GFLOP/s peak " + _UTIL,
        ),
    ),
    _p(
        "phone-4g",
        "Mid-range phone (2x Cortex-A76 + 6x A55) on 4G/LTE",
        up_bps=(8 * M, _OPENSIGNAL_LTE + "; LTE uploads of 5-15 Mbit/s"),
        down_bps=(
            25 * M,
            _OPENSIGNAL_LTE + "; " + _OOKLA_INDEX + "; LTE downloads of 15-40 Mbit/s",
        ),
        rtt_s=(0.050, _OPENSIGNAL_2019 + "; 4G latency 30-70 ms"),
        jitter=(0.010, "assumption"),
        loss=(0.0, "link-layer retransmission (RLC/HARQ) hides radio loss from TCP"),
        flops=(
            10 * G,
            "2 x 2.2 GHz x 16 FP32 FLOP/cycle (Arm Cortex-A76) = 70 GFLOP/s peak " + _UTIL,
        ),
    ),
    _p(
        "phone-5g",
        "Flagship phone (Cortex-X class) on 5G NR (sub-6 GHz)",
        up_bps=(20 * M, _OOKLA_5G + "; 5G uploads of 15-40 Mbit/s"),
        down_bps=(150 * M, _OOKLA_5G + "; 5G downloads of 100-400 Mbit/s"),
        rtt_s=(0.030, _OOKLA_5G + "; 5G latency 20-40 ms"),
        jitter=(0.005, "assumption"),
        loss=(0.0, "link-layer retransmission hides radio loss from TCP"),
        flops=(
            30 * G,
            "4 big cores x 3 GHz x 16-32 FP32 FLOP/cycle = 200-380 GFLOP/s peak " + _UTIL,
        ),
    ),
    _p(
        "laptop-wifi",
        "Laptop (4-core x86, AVX2) on home Wi-Fi behind a broadband line",
        up_bps=(20 * M, _OOKLA_INDEX + " (fixed upload median 30-50 Mbit/s), less for Wi-Fi"),
        down_bps=(
            50 * M,
            _OOKLA_INDEX
            + " (fixed download median ~80 Mbit/s); Wi-Fi is often the bottleneck: Sundaresan, "
            "Feamster & Teixeira, 'Home network or access link?', PAM 2016",
        ),
        rtt_s=(0.020, _OOKLA_INDEX + " (fixed latency 10-20 ms) plus the Wi-Fi hop"),
        jitter=(0.005, "assumption"),
        loss=(0.0, "assumption: Wi-Fi MAC retransmissions hide most loss"),
        flops=(
            100 * G,
            "4 cores x 2.5 GHz x 32 FP32 FLOP/cycle (AVX2 FMA) = 320 GFLOP/s peak x ~30% (assumption)",
        ),
    ),
    _p(
        "iot-ltem",
        "IoT gateway (Cortex-A53 class) on LTE-M (Cat-M1)",
        up_bps=(375e3, _GSMA_LTEM),
        down_bps=(300e3, _GSMA_LTEM),
        rtt_s=(
            0.100,
            "GSMA LTE-M guide: 10-15 ms over the air; 100 ms end to end is our assumption",
        ),
        jitter=(0.020, "assumption"),
        loss=(0.0, "link-layer retransmission hides radio loss from TCP"),
        flops=(1 * G, "Raspberry-Pi-3 class (4x Cortex-A53, 1.2 GHz): 19 GFLOP/s peak " + _UTIL),
    ),
    _p(
        "iot-nbiot",
        "Microcontroller sensor (Cortex-M4F) on NB-IoT (Cat-NB1)",
        up_bps=(62.5e3, _GSMA_NBIOT),
        down_bps=(26e3, _GSMA_NBIOT),
        rtt_s=(2.0, _TR45820),
        jitter=(0.300, "assumption: NB-IoT scheduling delays vary by hundreds of ms"),
        loss=(0.0, "link-layer retransmission hides radio loss from TCP"),
        flops=(
            0.1 * G,
            "Cortex-M4F at 168 MHz, one single-precision MAC per ~3 cycles (Arm Cortex-M4 TRM)",
        ),
    ),
    _p(
        "edge-ethernet",
        "Edge box (Jetson-Orin-Nano class GPU) on Gigabit Ethernet",
        up_bps=(1 * G, "IEEE 802.3ab 1000BASE-T"),
        down_bps=(1 * G, "IEEE 802.3ab 1000BASE-T"),
        rtt_s=(0.010, "assumption: metro path to a regional server"),
        jitter=(0.001, "assumption"),
        loss=(0.0, "wired path"),
        flops=(
            400 * G,
            "NVIDIA Jetson Orin Nano: 1024 CUDA cores x 625 MHz x 2 = 1.28 TFLOP/s FP32 x ~30% (assumption)",
        ),
    ),
]

#: The built-in profiles by name. Read-only.
CATALOG: Mapping[str, DeviceProfile] = MappingProxyType({p.name: p for p in _PROFILES})


def get_profile(name: str, catalog: Mapping[str, DeviceProfile] = CATALOG) -> DeviceProfile:
    try:
        return catalog[name]
    except KeyError:
        raise KeyError(
            f"unknown device profile {name!r}; known: {', '.join(sorted(catalog))}"
        ) from None


def _rate(bps: float) -> str:
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:g} {unit}"
    return f"{bps:g} bit/s"


def describe_profiles(
    catalog: Mapping[str, DeviceProfile] = CATALOG,
) -> list[tuple[str, str]]:
    """(name, one line) per profile, for ``fedsim list devices``."""
    return [
        (
            p.name,
            f"{p.description}: {_rate(p.down_bps)} down / {_rate(p.up_bps)} up, "
            f"RTT {p.rtt_s * 1e3:g} ms, {p.flops / 1e9:g} GFLOP/s",
        )
        for p in catalog.values()
    ]


@dataclass(frozen=True)
class MixEntry:
    """One line of a population mix: a profile, its share, field overrides, lognormal spread.

    ``spread`` is the sigma of a median-preserving lognormal factor ``exp(sigma·Z)`` drawn
    independently per device for ``up_bps``, ``down_bps`` and ``flops``.
    """

    profile: str | DeviceProfile
    share: float
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    spread: float = 0.0


_SPREAD_FIELDS = ("up_bps", "down_bps", "flops")
_FIELDS = frozenset(f.name for f in dataclasses.fields(DeviceProfile))


def allocate_counts(n: int, shares: Sequence[float]) -> list[int]:
    """Split ``n`` into integer counts proportional to ``shares`` (largest remainder).

    Hamilton's method: floor every quota, then give the leftover units to the largest
    fractional parts, ties to the earlier entry. The counts always sum to ``n``.
    """
    if n < 0:
        raise ValueError(f"population size must be >= 0, got {n}")
    if any(not (s >= 0 and math.isfinite(s)) for s in shares) or not sum(shares) > 0:
        raise ValueError(f"shares must be finite, >= 0 and not all zero, got {list(shares)}")
    total = math.fsum(shares)
    quotas = [n * s / total for s in shares]
    counts = [math.floor(q) for q in quotas]
    left = n - sum(counts)
    order = sorted(range(len(shares)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[:left]:
        counts[i] += 1
    return counts


def _entry(spec: MixEntry | Mapping[str, Any]) -> MixEntry:
    if isinstance(spec, MixEntry):
        return spec
    unknown = set(spec) - {"profile", "share", "overrides", "spread"}
    if unknown:
        raise ValueError(f"mix entry: unknown keys {sorted(unknown)}")
    return MixEntry(
        profile=spec["profile"],
        share=spec["share"],
        overrides=spec.get("overrides") or {},
        spread=spec.get("spread", 0.0),
    )


def build_population(
    n: int,
    mix: Sequence[MixEntry | Mapping[str, Any]],
    seed: int | np.random.Generator,
    catalog: Mapping[str, DeviceProfile] = CATALOG,
) -> list[DeviceProfile]:
    """``n`` device profiles, client id = list index, from a mix spec; deterministic for a seed.

    Counts per entry are exact (:func:`allocate_counts`); which client gets which entry is a
    seeded permutation; then each device draws its lognormal factors. The same (n, mix,
    seed) always gives the same list.
    """
    entries = [_entry(e) for e in mix]
    if not entries:
        raise ValueError("population mix is empty")
    bases = []
    for e in entries:
        base = (
            e.profile if isinstance(e.profile, DeviceProfile) else get_profile(e.profile, catalog)
        )
        bad = set(e.overrides) - _FIELDS
        if bad:
            raise ValueError(f"mix entry {base.name!r}: unknown override fields {sorted(bad)}")
        if not (e.spread >= 0 and math.isfinite(e.spread)):
            raise ValueError(f"mix entry {base.name!r}: spread must be >= 0, got {e.spread}")
        bases.append(dataclasses.replace(base, **e.overrides) if e.overrides else base)
    counts = allocate_counts(n, [e.share for e in entries])
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    slots = np.repeat(np.arange(len(entries)), counts)
    which = np.empty(n, dtype=np.int64)
    which[rng.permutation(n)] = slots
    factors = np.exp(rng.standard_normal((n, len(_SPREAD_FIELDS))))  # exp(Z), raised to sigma below
    population = []
    for cid in range(n):
        k = int(which[cid])
        base, sigma = bases[k], entries[k].spread
        if sigma > 0:
            f = factors[cid] ** sigma
            base = dataclasses.replace(
                base,
                up_bps=float(base.up_bps * f[0]),
                down_bps=float(base.down_bps * f[1]),
                flops=float(base.flops * f[2]),
            )
        population.append(base)
    return population
