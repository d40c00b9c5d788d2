"""Build the network model for a scenario (devices, server links, availability)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class _Timeline:
    client_id: int
    t_dispatch: float
    t_down_start: float
    t_down_end: float
    t_compute_end: float
    t_up_start: float
    t_up_end: float
    accepted: bool
    dropped: bool
    reason: str | None


class _SimpleNetwork:
    """Temporary: independent links, no sharing (replaced by fedsim.network.clock)."""

    def __init__(self, scenario: Any):
        d = scenario.network.devices[0]
        self.up = d.up or 20e6
        self.down = d.down or 50e6
        self.rtt = d.rtt if d.rtt is not None else 0.03
        self.flops = d.flops or 5e9
        self.n = scenario.clients.count

    def online_clients(self, t: float) -> list[int]:
        return list(range(self.n))

    def device(self, c: int):
        return None

    def device_flops(self, c: int) -> float:
        return self.flops

    def run_sync_round(self, t0, jobs, *, accept_first=None, deadline_s=None):
        tls = []
        for c, down, comp, up in jobs:
            td = t0 + self.rtt / 2 + down * 8 / self.down
            tc = td + comp
            tu = tc + self.rtt / 2 + up * 8 / self.up
            tls.append(_Timeline(c, t0, t0, td, tc, tc, tu, True, False, None))
        end = max((t.t_up_end for t in tls), default=t0)
        return end if math.isfinite(end) else t0, tls


def build_network(scenario: Any):
    return _SimpleNetwork(scenario)
