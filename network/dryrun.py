"""A dry run of the network model alone: many synchronous rounds with synthetic sizes.

Used by ``benchmarks/bench_des.py`` (``des_events_per_s``) and handy to see what a
population and server would do to round times before any training is run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .availability import Availability
from .devices import build_population
from .rounds import ClientJob, NetworkModel

__all__ = ["DEFAULT_MIX", "DryRunResult", "dry_run"]

#: A plausible cross-device population: mostly phones, some laptops, a few IoT and edge.
DEFAULT_MIX: tuple[Mapping[str, Any], ...] = (
    {"profile": "phone-3g", "share": 0.10, "spread": 0.3},
    {"profile": "phone-4g", "share": 0.40, "spread": 0.3},
    {"profile": "phone-5g", "share": 0.20, "spread": 0.3},
    {"profile": "laptop-wifi", "share": 0.20, "spread": 0.3},
    {"profile": "iot-ltem", "share": 0.05, "spread": 0.2},
    {"profile": "edge-ethernet", "share": 0.05, "spread": 0.1},
)


@dataclass(frozen=True)
class DryRunResult:
    rounds: int
    clients_per_round: float  # mean number of selected clients
    events: int  # model events: message sends, transmissions, deliveries, computes, drops
    sim_time_s: float  # simulated time at the end of the last round
    accepted: int
    dropped: int
    wall_s: float  # real seconds spent inside the network model (not simulated time)
    select_wall_s: float = 0.0  # real seconds spent choosing each round's clients


def dry_run(
    *,
    rounds: int = 100,
    clients: int = 1000,
    seed: int = 0,
    mix: Sequence[Mapping[str, Any]] = DEFAULT_MIX,
    server_up_bps: float = 1e9,
    server_down_bps: float = 1e9,
    model_bytes: int = 2_500_000,
    update_bytes: tuple[int, int] = (200_000, 2_500_000),
    train_flops: tuple[float, float] = (2e10, 8e10),
    availability: Availability | None = None,
    accept_first: int | None = None,
    deadline_s: float | None = None,
    between_rounds: Callable[[], object] | None = None,
    per_round: int | None = None,
) -> DryRunResult:
    """Simulate ``rounds`` synchronous rounds of every online client of a population, or of
    ``per_round`` of them drawn at random (``NetworkModel.sample_online``: no pass over the
    population).

    Byte sizes and FLOPs are drawn uniformly per client and round from the given ranges
    (seeded); every round starts when the previous one ended. ``between_rounds`` is called
    after each round, outside the timed part (the benchmark interleaves its reference).
    """
    devices = build_population(clients, mix, seed)
    model = NetworkModel(devices, server_up_bps, server_down_bps, availability, seed=seed)
    rng = np.random.default_rng([seed, 1])
    t = 0.0
    selected = accepted = dropped = 0
    wall = select_wall = 0.0
    for r in range(rounds):
        start = time.perf_counter()
        if per_round is None:
            ids = model.online_clients(t)
        else:
            ids = model.sample_online(t, per_round, np.random.default_rng([seed, 2, r]))
        select_wall += time.perf_counter() - start
        up = rng.integers(update_bytes[0], update_bytes[1], size=len(ids), endpoint=True)
        flops = rng.uniform(train_flops[0], train_flops[1], size=len(ids))
        jobs = [
            ClientJob(cid, model_bytes, model.compute_seconds(cid, float(f)), int(u))
            for cid, f, u in zip(ids, flops, up, strict=True)
        ]
        start = time.perf_counter()
        t, timelines = model.run_sync_round(
            t, jobs, accept_first=accept_first, deadline_s=deadline_s
        )
        wall += time.perf_counter() - start
        selected += len(jobs)
        accepted += sum(tl.accepted for tl in timelines)
        dropped += sum(tl.dropped for tl in timelines)
        if between_rounds is not None:
            between_rounds()
    return DryRunResult(
        rounds=rounds,
        clients_per_round=selected / rounds if rounds else 0.0,
        events=model.events,
        sim_time_s=t,
        accepted=accepted,
        dropped=dropped,
        wall_s=wall,
        select_wall_s=select_wall,
    )
