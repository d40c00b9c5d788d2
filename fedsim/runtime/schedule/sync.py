"""Synchronous rounds (DESIGN.md §2): select, dispatch, await every result, run the round's
network timeline over the real byte counts, accept arrivals, aggregate."""

from __future__ import annotations

import math
from typing import Any

from fedsim.codecs.wire import wire_bytes
from fedsim.runtime.checkpoint import RunState
from fedsim.runtime.ledger import Ledger
from fedsim.runtime.server import Server

IDLE_RETRY_S = 60.0  # with no client online, look again this much later (simulated)


async def sync_round(rnd: int, server: Server, executor: Any, ledger: Ledger, st: RunState) -> None:
    sc = server.scenario
    ledger.out.event("round_start", round=rnd)  # real-time marks for throughput (benchmarks)
    k = sc.clients.per_round
    selected = server.select(rnd, st.sim_time, math.ceil(k * sc.server.overcommit))
    dispatches = {d.client: d for d in server.dispatch(rnd, selected, st.task_seq)}
    st.task_seq += len(dispatches)
    results = await executor.run([d.task for d in dispatches.values()])
    await ledger.resolve()  # the previous round's row, before this round's traffic
    by_client = {r.client_id: r for r in results.values()}
    jobs = [
        (c, d.down_wire, d.compute_s, wire_bytes(by_client[c].update))
        for c, d in dispatches.items()
    ]
    if jobs:
        t_end, timelines = server.net.run_sync_round(
            st.sim_time,
            jobs,
            accept_first=k if sc.server.overcommit > 1.0 else None,
            deadline_s=sc.server.deadline,
        )
    else:  # nobody online: the server waits and tries again
        t_end, timelines = st.sim_time + IDLE_RETRY_S, []
    ledger.selected = len(selected)
    accepted = []
    for tl in sorted(timelines, key=lambda t: t.client_id):
        c = tl.client_id
        if ledger.trip(rnd, dispatches[c], tl, by_client[c], t_end):
            accepted.append(server.accept(c, by_client[c]))
    await ledger.close_round(rnd, t_end, accepted, {})
