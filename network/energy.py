"""Device energy: joules per client, integrated from a device's power over its round timeline.

The power figures themselves live with the device profiles: a
:class:`~fedsim.network.devices.PowerModel` per profile in
:data:`fedsim.network.devices.POWER_CATALOG`, each figure with its public source. A power
model gives a device's power in each state of a federated round:

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
docs/energy.md has the table of figures, the equations and the limitations.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: importing this module loads neither simpy nor rounds.py
    from .devices import PowerModel
    from .rounds import ClientTimeline

__all__ = [
    "ENERGY_PARTS",
    "client_energy",
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


def transfer_energy(power: PowerModel, direction: str, nbytes: float, duration_s: float) -> float:
    """Joules of one transfer of ``nbytes`` lasting ``duration_s``: ``alpha*8*nbytes + beta*T``.

    This is the integral of ``alpha * r(t) + beta`` over the transfer whatever the rate
    ``r(t)`` did meanwhile, since ``∫ r dt`` is the bits moved. Promotion and tail are not
    included (see :func:`client_energy`).
    """
    if nbytes < 0 or not duration_s >= 0:
        raise ValueError(f"bytes and duration must be >= 0, got {nbytes}, {duration_s}")
    alpha, beta = power.link(direction)
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
