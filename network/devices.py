"""Device profiles (links, latency, compute speed, power) with their public sources, and populations.

Each kind of device in the catalog has a :class:`DeviceProfile` (links, latency, compute
speed: :data:`CATALOG`) and, next to it, a :class:`PowerModel` (its power in each state of
a round: :data:`POWER_CATALOG`, by the same name); every figure of both carries its public
source (``.source(field)``). :mod:`fedsim.network.energy` integrates a power model over a
client's timeline.

All numbers are plain SI floats: bit/s, seconds, FLOP/s, watts, joules; ``*_j_per_bit``
are joules per bit (W per bit/s). The scenario layer converts units ("20Mbit/s") before
calling in. Catalog figures are round values inside the ranges the cited sources report;
where a figure is derived (peak FLOP/s × an assumed utilisation) the source says so;
"assumption" marks figures we chose inside published ranges. docs/network-model.md has the
table of profiles, docs/energy.md the table of power figures.
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
    "PowerModel",
    "POWER_FIELDS",
    "POWER_CATALOG",
    "get_power",
    "power_models",
]


class _Sourced:
    """A catalog entry whose ``sources`` pair a field name with the public source of its value."""

    sources: tuple[tuple[str, str], ...]

    def source(self, field: str) -> str | None:
        """The public source given for ``field``, if any."""
        for name, text in self.sources:
            if name == field:
                return text
        return None


@dataclass(frozen=True)
class DeviceProfile(_Sourced):
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


def compute_seconds(flops: float, device: DeviceProfile) -> float:
    """Simulated training time: counted FLOPs divided by the device's effective FLOP/s."""
    if flops < 0:
        raise ValueError(f"FLOP count must be >= 0, got {flops}")
    return flops / device.flops


#: The numeric fields of a PowerModel (the keys a scenario may override).
POWER_FIELDS = (
    "compute_w",
    "up_j_per_bit",
    "up_base_w",
    "down_j_per_bit",
    "down_base_w",
    "tail_w",
    "tail_s",
    "promo_w",
    "promo_s",
    "idle_w",
)


@dataclass(frozen=True)
class PowerModel(_Sourced):
    """Power of one kind of device in each state of a round, and where the numbers come from.

    - ``compute_w``: the whole device while training (W);
    - ``up_j_per_bit``, ``up_base_w``: uplink ``P = up_j_per_bit * r + up_base_w`` at ``r``
      bit/s (``alpha_u`` in J/bit = W per bit/s, ``beta_u`` in W; the whole device);
    - ``down_j_per_bit``, ``down_base_w``: the same for the downlink;
    - ``tail_w``, ``tail_s``: after a transfer the radio stays in a high-power state for
      ``tail_s`` seconds, drawing ``tail_w`` on top of whatever else the device does;
    - ``promo_w``, ``promo_s``: the promotion from idle to connected before a transfer that
      starts after the tail has run out (or first in the round);
    - ``idle_w``: the whole device waiting inside the round (radio idle).

    ``sources`` pairs a field name with the public source of its value.
    """

    name: str
    compute_w: float
    up_j_per_bit: float
    up_base_w: float
    down_j_per_bit: float
    down_base_w: float
    idle_w: float
    tail_w: float = 0.0
    tail_s: float = 0.0
    promo_w: float = 0.0
    promo_s: float = 0.0
    description: str = ""
    sources: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for f in POWER_FIELDS:
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and 0 <= v < math.inf):
                raise ValueError(
                    f"power model {self.name!r}: {f} must be >= 0 and finite, got {v!r}"
                )

    def with_overrides(self, overrides: Mapping[str, Any], note: str = "override") -> PowerModel:
        """A copy with some figures replaced (e.g. ``{"compute_w": 3.0}`` from a scenario).

        The source of each replaced figure becomes ``note``.
        """
        if not overrides:
            return self
        bad = set(overrides) - set(POWER_FIELDS)
        if bad:
            raise ValueError(
                f"power model {self.name!r}: unknown fields {sorted(bad)}; known: {', '.join(POWER_FIELDS)}"
            )
        values = {k: float(v) for k, v in overrides.items()}
        sources = tuple((k, s) for k, s in self.sources if k not in values)
        sources += tuple((k, note) for k in values)
        return dataclasses.replace(self, **values, sources=sources)

    def transfer_power(self, direction: str, rate_bps: float) -> float:
        """Watts while moving data at ``rate_bps`` bit/s; ``direction`` is "up" or "down"."""
        alpha, beta = self.link(direction)
        return alpha * rate_bps + beta

    def link(self, direction: str) -> tuple[float, float]:
        """``(alpha, beta)`` of a direction: J/bit and W of ``P = alpha * r + beta``."""
        if direction == "up":
            return self.up_j_per_bit, self.up_base_w
        if direction == "down":
            return self.down_j_per_bit, self.down_base_w
        raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")


# ---- sources of the link and compute figures ----------------------------------------

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


def _split(figures: Mapping[str, tuple[float, str]]) -> tuple[dict, tuple[tuple[str, str], ...]]:
    """``{field: (value, source)}`` -> the values, and the (field, source) pairs."""
    return {k: v for k, (v, _) in figures.items()}, tuple((k, s) for k, (_, s) in figures.items())


def _p(name: str, description: str, **figures: tuple[float, str]) -> DeviceProfile:
    values, sources = _split(figures)
    return DeviceProfile(name=name, description=description, sources=sources, **values)


# ---- sources of the power figures, by radio technology ------------------------------

_HUANG = (
    "Huang, Qian, Gerber, Mao, Sen & Spatscheck, 'A Close Examination of Performance and "
    "Power Characteristics of 4G LTE Networks', MobiSys 2012"
)
_T3 = _HUANG + ", Table 3 (power model of the radio states; HTC phone, screen off)"
_T4 = _HUANG + ", Table 4 (data transfer power model P = alpha_u t_u + alpha_d t_d + beta)"
_TR45820_POWER = (
    "3GPP TR 45.820 V13.1.0 (2015), battery-life evaluation assumptions: transmit at 23 dBm "
    "500 mW, receive 80 mW, idle light sleep 3 mW, deep sleep 0.015 mW"
)
_PIDRAMBLE = (
    "Raspberry Pi Dramble power benchmarks (pidramble.com/wiki/benchmarks/power-consumption): "
    "Pi 3 B idle 260 mA = 1.4 W, 400% CPU load 730 mA = 3.7 W at 5.1 V"
)
_INACTIVITY = (
    "assumption: RRC inactivity timer of 10 s (set by the operator; 10 s is a common value)"
)
_NO_PROMO = (
    "not modelled: the RRC connection set-up of LTE-M/NB-IoT is short next to transfers at "
    "tens to hundreds of kbit/s (assumption)"
)
_WIRED = "wired link: no radio state machine, hence no promotion and no tail"
_PHONE_CPU = (
    "assumption: a phone SoC under sustained all-core load draws a few watts before thermal "
    "throttling; round figure for this class of device, override when measured"
)

_MW = 1e-3
_MW_PER_MBPS = 1e-9  # mW per Mbit/s -> J/bit (W per bit/s)

# Huang et al. 2012, Tables 3 and 4 (milliwatts, milliseconds)
_BASE_MW = 11.4  # screen off
_LTE = {
    "alpha_u": 438.39,
    "alpha_d": 51.97,
    "beta": 1288.04,
    "promo": (1210.7, 260.1),
    "tail": (1060.0, 11576.0),
    "drx_idle": (594.3, 43.2, 1280.2),  # power during the on-duration, on ms, cycle ms
}
_3G = {
    "alpha_u": 868.98,
    "alpha_d": 122.12,
    "beta": 817.88,
    "promo": (659.4, 582.1),
    "tail_dch": (803.9, 8088.2),
    "tail_fach": (601.3, 824.2),
    "drx_idle": (374.2, 55.4, 5112.4),
}
_WIFI = {
    "alpha_u": 283.17,
    "alpha_d": 137.01,
    "beta": 132.86,
    "promo": (124.4, 79.1),
    "tail": (119.3, 238.1),
    "beacon_idle": (77.2, 7.6, 308.2),
}


def _duty(p_mw: float, on_ms: float, cycle_ms: float) -> float:
    """Average W of a periodic wake-up (DRX paging, Wi-Fi beacon) on top of the base."""
    return p_mw * on_ms / cycle_ms * _MW


_LTE_IDLE_W = _BASE_MW * _MW + _duty(*_LTE["drx_idle"])  # 31.5 mW
_3G_IDLE_W = _BASE_MW * _MW + _duty(*_3G["drx_idle"])  # 15.5 mW
_WIFI_RADIO_IDLE_W = _duty(*_WIFI["beacon_idle"])  # 1.9 mW
_WIFI_IDLE_W = _BASE_MW * _MW + _WIFI_RADIO_IDLE_W  # 13.3 mW
# 3G has two tail stages (DCH then FACH); one stage with the same duration and energy:
_3G_TAIL_S = (_3G["tail_dch"][1] + _3G["tail_fach"][1]) * _MW
_3G_TAIL_J = (
    _3G["tail_dch"][0] * _3G["tail_dch"][1] + _3G["tail_fach"][0] * _3G["tail_fach"][1]
) * 1e-6

_LAPTOP_PLATFORM_W = 4.0
_JETSON_IDLE_W = 4.0
_IOT_MODEM_SLEEP_W = 3 * _MW


def _pm(name: str, description: str, **figures: tuple[float, str]) -> PowerModel:
    values, sources = _split(figures)
    values = {k: float(v) for k, v in values.items()}
    return PowerModel(name=name, description=description, sources=sources, **values)


def _lte_radio(note: str = "") -> dict[str, tuple[float, str]]:
    """The LTE radio figures of Huang et al. 2012 (whole phone, screen off)."""
    return dict(
        up_j_per_bit=(
            _LTE["alpha_u"] * _MW_PER_MBPS,
            _T4 + ": LTE alpha_u = 438.39 mW/Mbps" + note,
        ),
        up_base_w=(_LTE["beta"] * _MW, _T4 + ": LTE beta = 1288.04 mW" + note),
        down_j_per_bit=(
            _LTE["alpha_d"] * _MW_PER_MBPS,
            _T4 + ": LTE alpha_d = 51.97 mW/Mbps" + note,
        ),
        down_base_w=(_LTE["beta"] * _MW, _T4 + ": LTE beta = 1288.04 mW" + note),
        promo_w=(_LTE["promo"][0] * _MW, _T3 + ": LTE promotion 1210.7 mW" + note),
        promo_s=(_LTE["promo"][1] * _MW, _T3 + ": LTE promotion 260.1 ms" + note),
        tail_w=(
            _LTE["tail"][0] * _MW - _LTE_IDLE_W,
            _T3 + ": LTE tail base 1060.0 mW, less the idle power (counted apart)" + note,
        ),
        tail_s=(_LTE["tail"][1] * _MW, _T3 + ": LTE tail 11576.0 ms" + note),
        idle_w=(
            _LTE_IDLE_W,
            _T3
            + ": screen-off base 11.4 mW + RRC_IDLE DRX 594.3 mW for 43.2 ms every 1280.2 ms"
            + note,
        ),
    )


_PI_IDLE = "host idle 1.4 W (" + _PIDRAMBLE + ")"
_MCU_RUN = "MCU running 0.13 W (STM32F405/407 datasheet DS8626)"


def _iot_modem(
    busy_w: float, busy_src: str, idle_w: float, idle_src: str
) -> dict[str, tuple[float, str]]:
    """An LTE-M/NB-IoT modem (3GPP TR 45.820 powers) next to a host drawing ``busy_w``
    while the modem works and ``idle_w`` while the device waits."""
    tx, rx = 0.5, 0.08
    return dict(
        up_j_per_bit=(
            0.0,
            "the modem transmits at full power whatever the rate: " + _TR45820_POWER,
        ),
        up_base_w=(
            tx + busy_w,
            f"modem transmit 500 mW ({_TR45820_POWER}; also for LTE-M) + {busy_src}",
        ),
        down_j_per_bit=(0.0, "the modem receives at constant power: " + _TR45820_POWER),
        down_base_w=(rx + busy_w, f"modem receive 80 mW ({_TR45820_POWER}) + {busy_src}"),
        tail_w=(
            rx - _IOT_MODEM_SLEEP_W,
            f"connected-mode monitoring at receive power 80 mW less light sleep 3 mW ({_TR45820_POWER})",
        ),
        tail_s=(10.0, _INACTIVITY),
        promo_w=(0.0, _NO_PROMO),
        promo_s=(0.0, _NO_PROMO),
        idle_w=(
            idle_w + _IOT_MODEM_SLEEP_W,
            f"{idle_src} + modem light sleep 3 mW ({_TR45820_POWER})",
        ),
    )


# ---- the catalog: each kind of device, its profile and its power figures side by side ----

_DEVICES: list[tuple[DeviceProfile, PowerModel]] = [
    (
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
                "4 cores x 1.4 GHz x 4 FP32 FLOP/cycle (Arm Cortex-A53 TRM) = 22 GFLOP/s peak "
                + _UTIL,
            ),
        ),
        _pm(
            "phone-3g",
            "Low-end phone on 3G/HSPA: Huang et al.'s 3G power model",
            compute_w=(1.5, _PHONE_CPU + " (4x Cortex-A53)"),
            up_j_per_bit=(_3G["alpha_u"] * _MW_PER_MBPS, _T4 + ": 3G alpha_u = 868.98 mW/Mbps"),
            up_base_w=(_3G["beta"] * _MW, _T4 + ": 3G beta = 817.88 mW"),
            down_j_per_bit=(_3G["alpha_d"] * _MW_PER_MBPS, _T4 + ": 3G alpha_d = 122.12 mW/Mbps"),
            down_base_w=(_3G["beta"] * _MW, _T4 + ": 3G beta = 817.88 mW"),
            promo_w=(_3G["promo"][0] * _MW, _T3 + ": 3G promotion 659.4 mW"),
            promo_s=(_3G["promo"][1] * _MW, _T3 + ": 3G promotion 582.1 ms"),
            tail_w=(
                _3G_TAIL_J / _3G_TAIL_S - _3G_IDLE_W,
                _T3 + ": DCH tail 803.9 mW x 8088.2 ms then FACH tail 601.3 mW x 824.2 ms, as one "
                "stage of the same energy and duration, less the idle power",
            ),
            tail_s=(_3G_TAIL_S, _T3 + ": DCH 8088.2 ms + FACH 824.2 ms"),
            idle_w=(
                _3G_IDLE_W,
                _T3 + ": screen-off base 11.4 mW + 3G DRX 374.2 mW for 55.4 ms every 5112.4 ms",
            ),
        ),
    ),
    (
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
        _pm(
            "phone-4g",
            "Mid-range phone on 4G/LTE: Huang et al.'s LTE power model",
            compute_w=(3.0, _PHONE_CPU + " (2x Cortex-A76 + 6x A55)"),
            **_lte_radio(),
        ),
    ),
    (
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
        _pm(
            "phone-5g",
            "Flagship phone on 5G NR (NSA): LTE radio figures as a placeholder",
            compute_w=(4.0, _PHONE_CPU + " (Cortex-X class)"),
            **_lte_radio(
                "; PLACEHOLDER for 5G: non-standalone 5G keeps the LTE anchor and its RRC state "
                "machine; Narayanan et al., 'A Variegated Look at 5G in the Wild', SIGCOMM 2021, "
                "fit the same linear model to 5G radios (their coefficients are not transcribed "
                "here): override with measured 5G figures"
            ),
        ),
    ),
    (
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
        _pm(
            "laptop-wifi",
            "Laptop (4-core x86) on Wi-Fi: Huang et al.'s Wi-Fi radio on a laptop platform",
            compute_w=(
                20.0,
                "CPU package at its 15 W TDP under all-core load (Intel ARK: 4-core U-series, "
                "e.g. Core i7-8550U, TDP 15 W) + the idle platform (4 W, assumption), rounded",
            ),
            up_j_per_bit=(_WIFI["alpha_u"] * _MW_PER_MBPS, _T4 + ": WiFi alpha_u = 283.17 mW/Mbps"),
            up_base_w=(
                _LAPTOP_PLATFORM_W + (_WIFI["beta"] - _BASE_MW) * _MW,
                _T4 + ": WiFi beta = 132.86 mW less the phone's 11.4 mW base, on the laptop "
                "platform (4 W, assumption)",
            ),
            down_j_per_bit=(
                _WIFI["alpha_d"] * _MW_PER_MBPS,
                _T4 + ": WiFi alpha_d = 137.01 mW/Mbps",
            ),
            down_base_w=(
                _LAPTOP_PLATFORM_W + (_WIFI["beta"] - _BASE_MW) * _MW,
                _T4 + ": WiFi beta = 132.86 mW less the phone's 11.4 mW base, on the laptop "
                "platform (4 W, assumption)",
            ),
            promo_w=(_WIFI["promo"][0] * _MW, _T3 + ": WiFi promotion 124.4 mW"),
            promo_s=(_WIFI["promo"][1] * _MW, _T3 + ": WiFi promotion 79.1 ms"),
            tail_w=(
                _WIFI["tail"][0] * _MW - _WIFI_IDLE_W,
                _T3 + ": WiFi tail base 119.3 mW, less the phone's idle power",
            ),
            tail_s=(_WIFI["tail"][1] * _MW, _T3 + ": WiFi tail 238.1 ms"),
            idle_w=(
                _LAPTOP_PLATFORM_W + _WIFI_RADIO_IDLE_W,
                "assumption: laptop idle with the display off, 4 W; + Wi-Fi beacon reception "
                "77.2 mW for 7.6 ms every 308.2 ms (" + _T3 + ")",
            ),
        ),
    ),
    (
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
            flops=(
                1 * G,
                "Raspberry-Pi-3 class (4x Cortex-A53, 1.2 GHz): 19 GFLOP/s peak " + _UTIL,
            ),
        ),
        _pm(
            "iot-ltem",
            "IoT gateway (Raspberry-Pi-3 class) with an LTE-M modem",
            compute_w=(
                3.7 + _IOT_MODEM_SLEEP_W,
                _PIDRAMBLE + "; + modem light sleep 3 mW (" + _TR45820_POWER + ")",
            ),
            **_iot_modem(1.4, _PI_IDLE, 1.4, _PI_IDLE),
        ),
    ),
    (
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
        _pm(
            "iot-nbiot",
            "Microcontroller sensor (Cortex-M4F) with an NB-IoT modem",
            compute_w=(
                0.13 + _IOT_MODEM_SLEEP_W,
                "STMicroelectronics STM32F405/407 datasheet (DS8626): ~40 mA in Run mode at "
                "168 MHz x 3.3 V = 0.13 W; + modem light sleep 3 mW (" + _TR45820_POWER + ")",
            ),
            **_iot_modem(
                0.13, _MCU_RUN, 1 * _MW, "MCU in a low-power mode waiting, ~1 mW (assumption)"
            ),
        ),
    ),
    (
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
        _pm(
            "edge-ethernet",
            "Edge box (Jetson Orin Nano class) on Gigabit Ethernet",
            compute_w=(
                15.0,
                "NVIDIA Jetson Orin Nano 8GB module, 15 W power mode (NVIDIA Jetson Orin Nano "
                "series data sheet: 7 W to 15 W), the mode of the 625 MHz GPU clock in devices.py",
            ),
            up_j_per_bit=(0.0, "assumption: a wired PHY draws the same power whatever the rate"),
            up_base_w=(
                _JETSON_IDLE_W + 0.5,
                "idle box (4 W, assumption) + 0.5 W for the host network stack and PHY while "
                "sending (assumption)",
            ),
            down_j_per_bit=(0.0, "assumption: a wired PHY draws the same power whatever the rate"),
            down_base_w=(
                _JETSON_IDLE_W + 0.5,
                "idle box (4 W, assumption) + 0.5 W for the host network stack and PHY while "
                "receiving (assumption)",
            ),
            tail_w=(0.0, _WIRED),
            tail_s=(0.0, _WIRED),
            promo_w=(0.0, _WIRED),
            promo_s=(0.0, _WIRED),
            idle_w=(
                _JETSON_IDLE_W,
                "assumption: Jetson Orin Nano module and carrier board idle, link up, ~4 W",
            ),
        ),
    ),
]

#: The built-in profiles by name. Read-only.
CATALOG: Mapping[str, DeviceProfile] = MappingProxyType({p.name: p for p, _ in _DEVICES})

#: The built-in power models by device profile name (the names of :data:`CATALOG`). Read-only.
POWER_CATALOG: Mapping[str, PowerModel] = MappingProxyType({pm.name: pm for _, pm in _DEVICES})


def get_profile(name: str, catalog: Mapping[str, DeviceProfile] = CATALOG) -> DeviceProfile:
    try:
        return catalog[name]
    except KeyError:
        raise KeyError(
            f"unknown device profile {name!r}; known: {', '.join(sorted(catalog))}"
        ) from None


def get_power(
    name: str,
    overrides: Mapping[str, Any] | None = None,
    catalog: Mapping[str, PowerModel] = POWER_CATALOG,
) -> PowerModel:
    """The power model of a device profile, with a scenario's field overrides applied."""
    try:
        base = catalog[name]
    except KeyError:
        raise KeyError(
            f"no power model for device profile {name!r}; known: {', '.join(sorted(catalog))}"
        ) from None
    return base.with_overrides(overrides or {}, note="scenario override")


def power_models(
    devices: Sequence[DeviceProfile],
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    catalog: Mapping[str, PowerModel] = POWER_CATALOG,
) -> list[PowerModel]:
    """One power model per device (client id = index), looked up by profile name.

    ``overrides`` maps a profile name to field overrides, e.g.
    ``{"phone-4g": {"compute_w": 3.5}}``; models are shared between devices of one profile.
    """
    overrides = overrides or {}
    unknown = set(overrides) - {d.name for d in devices}
    if unknown:
        raise ValueError(f"power overrides for profiles not in the population: {sorted(unknown)}")
    cache: dict[str, PowerModel] = {}
    out = []
    for d in devices:
        pm = cache.get(d.name)
        if pm is None:
            pm = cache[d.name] = get_power(d.name, overrides.get(d.name), catalog)
        out.append(pm)
    return out


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
