"""Max-min fair rate allocation (progressive filling) and the TCP loss bound: pure functions.

The simpy driver in :mod:`fedsim.network.links` keeps an incremental version of the same
allocation for fedsim's star topology; these functions are the reference it is tested against.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["maxmin_rates", "waterfill_level", "mathis_rate"]


def maxmin_rates(
    flows: Sequence[Sequence[int]],
    capacities: Sequence[float],
    caps: Sequence[float] | None = None,
) -> np.ndarray:
    """Max-min fair rates of ``flows`` over links of the given ``capacities``.

    ``flows[i]`` lists the link indices flow ``i`` crosses; ``caps[i]`` (optional) bounds
    flow ``i`` on its own (a private link, e.g. the Mathis loss bound). Returns one rate per
    flow, in the units of ``capacities``.

    Progressive filling (Bertsekas & Gallager, *Data Networks*, 2nd ed., sec. 6.5.2): raise
    every unfrozen flow's rate together; when a link saturates, freeze the flows crossing it.
    Equivalently, repeatedly take the link with the smallest fair share ``remaining / unfrozen``
    and give that share to its unfrozen flows. Shares never decrease as flows freeze, so a
    lazy heap of shares gives O((F·k + L) log L) for F flows crossing k links each.
    """
    n_links = len(capacities)
    n_flows = len(flows)
    rates = np.zeros(n_flows)
    if n_flows == 0:
        return rates
    remaining = [float(c) for c in capacities]
    members: list[list[int]] = [[] for _ in range(n_links)]
    for i, links in enumerate(flows):
        for link in links:
            members[link].append(i)
    if caps is not None:
        # Each finite cap becomes a private link crossed by its flow alone.
        flows = [list(links) for links in flows]
        for i, cap in enumerate(caps):
            if math.isfinite(cap):
                remaining.append(float(cap))
                members.append([i])
                flows[i].append(len(remaining) - 1)
    count = [len(m) for m in members]
    frozen = [False] * n_flows
    heap = [(remaining[j] / count[j], j) for j in range(len(remaining)) if count[j] > 0]
    heapq.heapify(heap)
    left = n_flows
    while heap and left:
        share, j = heapq.heappop(heap)
        if count[j] == 0 or share != remaining[j] / count[j]:
            continue  # stale entry: this link's share changed since it was pushed
        share = max(share, 0.0)
        for i in members[j]:
            if frozen[i]:
                continue
            frozen[i] = True
            left -= 1
            rates[i] = share
            for other in flows[i]:
                count[other] -= 1
                remaining[other] -= share
                if other != j and count[other] > 0:
                    heapq.heappush(heap, (remaining[other] / count[other], other))
    # Flows crossing no finite link at all are unbounded.
    for i in range(n_flows):
        if not frozen[i]:
            rates[i] = math.inf
    return rates


def waterfill_level(caps: Sequence[float], capacity: float) -> float:
    """The fair level ``λ`` of one shared link of ``capacity`` under per-flow ``caps``.

    The max-min rate of flow ``i`` is ``min(caps[i], λ)`` with ``Σ min(caps[i], λ) = capacity``;
    ``inf`` when the caps fit (``Σ caps ≤ capacity``). This is the star topology fedsim
    simulates: every flow crosses one server link plus its device's own link.
    """
    ordered = sorted(caps)
    left = float(capacity)
    for k, cap in enumerate(ordered):
        share = left / (len(ordered) - k)
        if cap >= share:
            return share
        left -= cap
    return math.inf


def mathis_rate(mss_bytes: float, rtt_s: float, loss: float) -> float:
    """Upper bound on a TCP flow's throughput in bytes/s under random loss ``loss``.

    Mathis, Semke, Mahdavi & Ott, "The macroscopic behavior of the TCP congestion avoidance
    algorithm", CCR 27(3), 1997, eq. (3): ``BW = MSS / (RTT · sqrt(p)) · C``; we take
    ``C = 1`` (the paper derives sqrt(3/2) without and about 0.87 with delayed ACKs).
    """
    if loss <= 0.0 or rtt_s <= 0.0:
        return math.inf
    return mss_bytes / (rtt_s * math.sqrt(loss))
