"""Device energy: power models per device kind, with their public sources, and joules per client.

A :class:`PowerModel` gives a device's power in each state of a federated round:

- training: ``compute_w`` (the whole device under training load);
- a transfer at throughput ``r`` bit/s: ``P = alpha * r + beta`` per direction (the linear
  model of Huang et al., MobiSys 2012), so a transfer of ``B`` bytes lasting ``T`` seconds
  costs ``alpha * 8B + beta * T`` joules: the ``alpha`` part depends only on the bytes, the
  ``beta`` part grows with the time the transfer takes (slowed by link sharing, it costs
  more);
- the radio state machine around transfers (cellular, Wi-Fi): a *promotion* to the
  connected state before a transfer that starts with the radio idle, and a *tail* after
  each transfer, during which the radio stays in a high-power state;
- ``idle_w`` while the client waits inside the round.

:func:`client_energy` integrates that power over one client's :class:`ClientTimeline`.
Units: watts, seconds, joules, bit/s; ``*_j_per_bit`` are joules per bit (W per bit/s).
Every figure of :data:`POWER_CATALOG` carries its public source (``power.source(field)``);
"assumption" marks figures we chose inside published ranges. docs/energy.md has the table,
the equations and the limitations.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: importing this module loads neither simpy nor the clock
    from .clock import ClientTimeline
    from .devices import DeviceProfile

__all__ = [
    "ENERGY_PARTS",
    "POWER_CATALOG",
    "POWER_FIELDS",
    "PowerModel",
    "client_energy",
    "get_power",
    "power_models",
    "sum_energy",
    "transfer_energy",
]

#: The parts of a client's energy, in joules; they add up to ``energy_j``.
ENERGY_PARTS = (
    "energy_compute_j",
    "energy_down_j",
    "energy_up_j",
    "energy_tail_j",
    "energy_idle_j",
)

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
class PowerModel:
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

    def source(self, field: str) -> str | None:
        """The public source given for ``field``, if any."""
        for name, text in self.sources:
            if name == field:
                return text
        return None

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
        alpha, beta = self._link(direction)
        return alpha * rate_bps + beta

    def _link(self, direction: str) -> tuple[float, float]:
        if direction == "up":
            return self.up_j_per_bit, self.up_base_w
        if direction == "down":
            return self.down_j_per_bit, self.down_base_w
        raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")


def transfer_energy(power: PowerModel, direction: str, nbytes: float, duration_s: float) -> float:
    """Joules of one transfer of ``nbytes`` lasting ``duration_s``: ``alpha*8*nbytes + beta*T``.

    This is the integral of ``alpha * r(t) + beta`` over the transfer whatever the rate
    ``r(t)`` did meanwhile, since ``∫ r dt`` is the bits moved. Promotion and tail are not
    included (see :func:`client_energy`).
    """
    if nbytes < 0 or not duration_s >= 0:
        raise ValueError(f"bytes and duration must be >= 0, got {nbytes}, {duration_s}")
    alpha, beta = power._link(direction)
    return alpha * 8.0 * nbytes + beta * duration_s


def _moved_bits(nbytes: int, rate_bps: float | None, elapsed: float) -> float:
    """Bits a cut transfer had moved: at most the message, at most the link rate × time."""
    bits = 8.0 * nbytes
    return bits if rate_bps is None else min(bits, rate_bps * elapsed)


def client_energy(
    power: PowerModel,
    timeline: ClientTimeline,
    down_bytes: int,
    up_bytes: int,
    compute_s: float,
    round_end: float,
    *,
    down_bps: float | None = None,
    up_bps: float | None = None,
) -> dict[str, float]:
    """Joules one client spent in a round: ``energy_j`` and its parts (:data:`ENERGY_PARTS`).

    Power is integrated over the client's real timeline, from ``t_dispatch`` until
    ``round_end`` (an accepted client waits for the round to end) or until ``t_dropped``
    (a dropped client stops consuming then; its tail is cut there too):

    - download ``[t_down_start, t_down_end]`` and upload ``[t_up_start, t_up_end]``:
      ``alpha * 8B + beta * T`` each (``T`` as simulated, link sharing and one-way latency
      included); a transfer cut by a drop pays ``beta`` until the drop and ``alpha`` on the
      bits it had moved, bounded by ``down_bps``/``up_bps`` × elapsed when given (the
      device's link rate), else on the whole message (an upper bound);
    - compute: ``compute_w`` for ``compute_s`` after the download (less if dropped first);
    - tail: ``tail_w`` for ``tail_s`` after each transfer, cut short by the next transfer
      (which then needs no promotion) or by a drop; the tail after the upload of an accepted
      client is counted in full, even past ``round_end`` (the radio spends it anyway);
      promotion: ``promo_w * promo_s`` before each transfer that starts with the radio idle
      (the first one of the round, or one starting after the previous tail ran out);
    - idle: ``idle_w`` for the rest of the time inside the round (after an accepted upload
      until ``round_end``).

    Phases never reached (``inf`` in the timeline) cost nothing. For an asynchronous
    arrival pass ``round_end = timeline.t_up_end`` (or the drop time): no idle wait.
    """
    tl = timeline
    if not math.isfinite(round_end):
        raise ValueError(f"round_end must be finite, got {round_end}")
    if not (compute_s >= 0 and math.isfinite(compute_s)):
        raise ValueError(f"compute_s must be >= 0 and finite, got {compute_s}")
    if down_bytes < 0 or up_bytes < 0:
        raise ValueError("byte counts must be >= 0")
    if tl.dropped:
        stop = tl.t_dropped
        if not math.isfinite(stop):
            raise ValueError(f"client {tl.client_id}: dropped without t_dropped")
    else:
        stop = max(round_end, tl.t_up_end) if tl.accepted else round_end

    transfers: list[tuple[float, float]] = []  # (start, end) of the transfers reached
    e_down = e_up = e_compute = 0.0
    busy = 0.0

    if tl.t_down_start < stop:
        end = min(tl.t_down_end, stop)
        elapsed = end - tl.t_down_start
        done = tl.t_down_end <= stop
        bits = 8.0 * down_bytes if done else _moved_bits(down_bytes, down_bps, elapsed)
        e_down = power.down_j_per_bit * bits + power.down_base_w * elapsed
        transfers.append((tl.t_down_start, end))
        busy += elapsed
        if done:
            t_comp = min(compute_s, stop - tl.t_down_end)
            e_compute = power.compute_w * t_comp
            busy += t_comp

    if tl.t_up_start < stop:
        done = tl.accepted
        end = tl.t_up_end if done else stop
        elapsed = end - tl.t_up_start
        bits = 8.0 * up_bytes if done else _moved_bits(up_bytes, up_bps, elapsed)
        e_up = power.up_j_per_bit * bits + power.up_base_w * elapsed
        transfers.append((tl.t_up_start, end))
        busy += elapsed

    e_tail = 0.0
    prev_end = None
    for start, end in transfers:
        gap = math.inf if prev_end is None else start - prev_end
        if gap >= power.tail_s:  # the radio is idle: promote it first
            e_tail += power.promo_w * power.promo_s
        if prev_end is not None:
            e_tail += power.tail_w * min(power.tail_s, gap)
        prev_end = end
    if prev_end is not None:
        limit = stop - prev_end if tl.dropped else math.inf
        e_tail += power.tail_w * min(power.tail_s, max(0.0, limit))

    idle_s = max(0.0, stop - tl.t_dispatch - busy)
    e_idle = power.idle_w * idle_s

    parts = {
        "energy_compute_j": e_compute,
        "energy_down_j": e_down,
        "energy_up_j": e_up,
        "energy_tail_j": e_tail,
        "energy_idle_j": e_idle,
    }
    return {"energy_j": math.fsum(parts.values()), **parts}


def sum_energy(rows: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Add up :func:`client_energy` results (e.g. over a round's clients)."""
    rows = list(rows)
    keys = ("energy_j", *ENERGY_PARTS)
    return {k: math.fsum(r[k] for r in rows) for k in keys}


# ---- the catalog ------------------------------------------------------------------------------

_HUANG = (
    "Huang, Qian, Gerber, Mao, Sen & Spatscheck, 'A Close Examination of Performance and "
    "Power Characteristics of 4G LTE Networks', MobiSys 2012"
)
_T3 = _HUANG + ", Table 3 (power model of the radio states; HTC phone, screen off)"
_T4 = _HUANG + ", Table 4 (data transfer power model P = alpha_u t_u + alpha_d t_d + beta)"
_TR45820 = (
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
    values = {k: float(v) for k, (v, _) in figures.items()}
    sources = tuple((k, s) for k, (_, s) in figures.items())
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
        up_j_per_bit=(0.0, "the modem transmits at full power whatever the rate: " + _TR45820),
        up_base_w=(tx + busy_w, f"modem transmit 500 mW ({_TR45820}; also for LTE-M) + {busy_src}"),
        down_j_per_bit=(0.0, "the modem receives at constant power: " + _TR45820),
        down_base_w=(rx + busy_w, f"modem receive 80 mW ({_TR45820}) + {busy_src}"),
        tail_w=(
            rx - _IOT_MODEM_SLEEP_W,
            f"connected-mode monitoring at receive power 80 mW less light sleep 3 mW ({_TR45820})",
        ),
        tail_s=(10.0, _INACTIVITY),
        promo_w=(0.0, _NO_PROMO),
        promo_s=(0.0, _NO_PROMO),
        idle_w=(idle_w + _IOT_MODEM_SLEEP_W, f"{idle_src} + modem light sleep 3 mW ({_TR45820})"),
    )


_POWER = [
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
    _pm(
        "phone-4g",
        "Mid-range phone on 4G/LTE: Huang et al.'s LTE power model",
        compute_w=(3.0, _PHONE_CPU + " (2x Cortex-A76 + 6x A55)"),
        **_lte_radio(),
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
        down_j_per_bit=(_WIFI["alpha_d"] * _MW_PER_MBPS, _T4 + ": WiFi alpha_d = 137.01 mW/Mbps"),
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
    _pm(
        "iot-ltem",
        "IoT gateway (Raspberry-Pi-3 class) with an LTE-M modem",
        compute_w=(
            3.7 + _IOT_MODEM_SLEEP_W,
            _PIDRAMBLE + "; + modem light sleep 3 mW (" + _TR45820 + ")",
        ),
        **_iot_modem(1.4, _PI_IDLE, 1.4, _PI_IDLE),
    ),
    _pm(
        "iot-nbiot",
        "Microcontroller sensor (Cortex-M4F) with an NB-IoT modem",
        compute_w=(
            0.13 + _IOT_MODEM_SLEEP_W,
            "STMicroelectronics STM32F405/407 datasheet (DS8626): ~40 mA in Run mode at "
            "168 MHz x 3.3 V = 0.13 W; + modem light sleep 3 mW (" + _TR45820 + ")",
        ),
        **_iot_modem(
            0.13, _MCU_RUN, 1 * _MW, "MCU in a low-power mode waiting, ~1 mW (assumption)"
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
]

#: The built-in power models by device profile name (the names of ``devices.CATALOG``). Read-only.
POWER_CATALOG: Mapping[str, PowerModel] = MappingProxyType({p.name: p for p in _POWER})


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
