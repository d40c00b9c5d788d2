"""FedBuff (Nguyen et al., AISTATS 2022): buffered asynchronous aggregation.

`server.concurrency` clients train at once, really concurrently across workers: a task is
submitted to the executor as soon as its client is chosen, before any earlier result is
known. The network model's `AsyncSession` releases arrivals (and offline drops) strictly in
simulated-time order, conservatively — it never releases an event at time T while an
outstanding client whose upload size is still unknown could arrive before T; the schedule
then waits for exactly those results. Every `server.buffer_size` accepted updates the method's
own `aggregate` runs with staleness weights s(τ) in `ClientResult.weight`.

Checkpoints: after an aggregation the schedule's state is the session's call journal (replayed
into a fresh session on resume: the session is deterministic in its calls), the in-flight
clients with their results (awaited before saving), and its counters.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedsim.algorithms.base import RoundPlan
from fedsim.codecs.wire import from_blob, to_blob, wire_bytes
from fedsim.errors import FedsimError
from fedsim.runtime.checkpoint import RunState
from fedsim.runtime.ledger import Ledger
from fedsim.runtime.protocol import Task, TaskResult, pack_state, unpack_state
from fedsim.runtime.schedule.sync import IDLE_RETRY_S
from fedsim.runtime.server import Dispatch, Server


def staleness_weight(kind: str, exponent: float, tau: int) -> float:
    """FedBuff's staleness scaling: constant 1, polynomial (1+τ)^-a, or hinge."""
    if kind == "constant":
        return 1.0
    if kind == "polynomial":
        return float((1.0 + tau) ** -exponent)
    return 1.0 if tau <= 10 else float(1.0 / (exponent * (tau - 10) + 1.0))  # hinge at b = 10


@dataclass
class Flight:
    dispatch: Dispatch
    version: int  # the global model version the client trains from
    future: asyncio.Future


class FedBuff:
    def __init__(self, server: Server, executor: Any, ledger: Ledger, st: RunState):
        self.server, self.executor, self.ledger, self.st = server, executor, ledger, st
        self.sc = server.scenario
        self.session = None
        self.journal: list[list] = []
        self.version = 0  # aggregations so far
        self.draws = 0
        self.in_flight: dict[int, Flight] = {}
        self.buffer: list = []
        self._new_session(st.sim_time)

    # ---- the session, journaled ----------------------------------------------------------
    def _new_session(self, t: float) -> None:
        self.session = self.server.net.model.async_session(t)
        self.journal.append(["s", t])

    def _complete(self, c: int, up: int) -> None:
        self.session.complete(c, up)
        self.journal.append(["c", c, up])

    def _next(self) -> Any:
        self.journal.append(["n"])
        return self.session.next_arrival()

    def _replay(self, journal: list[list]) -> None:
        for op in journal:
            if op[0] == "s":
                self.session = self.server.net.model.async_session(op[1])
            elif op[0] == "d":
                self.session.dispatch(op[1], op[2], op[3], op[4])
            elif op[0] == "c":
                self.session.complete(op[1], op[2])
            elif op[0] == "n":
                self.session.next_arrival()
        self.journal = [list(op) for op in journal]

    # ---- dispatch --------------------------------------------------------------------------
    def dispatch(self, t: float) -> None:
        want = self.sc.server.concurrency - len(self.in_flight)
        if want <= 0:
            return
        self.draws += 1
        chosen = self.server.select(self.draws, t, want, exclude=set(self.in_flight))
        if not chosen:
            return
        for d in self.server.dispatch(self.version + 1, chosen, self.st.task_seq):
            self.in_flight[d.client] = Flight(d, self.version, self.executor.submit(d.task))
            self.session.dispatch(d.client, t, d.down_wire, d.compute_s)
            self.journal.append(["d", d.client, t, d.down_wire, d.compute_s])
        self.st.task_seq += len(chosen)
        self.ledger.selected += len(chosen)

    # ---- the loop --------------------------------------------------------------------------
    async def run(self, on_aggregated: Any) -> None:
        st, sc = self.st, self.sc
        if st.round < sc.rounds:
            self.dispatch(st.sim_time)
        while st.round < sc.rounds:
            tl = self._next()
            if tl is None:
                waiting = self.session.waiting_for()
                if waiting:  # simulated time needs these results: wait for one, report all done
                    futs = [self.in_flight[c].future for c in waiting]
                    await asyncio.wait(futs, return_when=asyncio.FIRST_COMPLETED)
                    for c in waiting:
                        if self.in_flight[c].future.done():
                            self._complete(c, wire_bytes(self.in_flight[c].future.result().update))
                    continue
                if not self.in_flight:  # nobody online: look again later
                    st.sim_time = max(st.sim_time, self.session.now) + IDLE_RETRY_S
                    self._new_session(st.sim_time)
                    self.dispatch(st.sim_time)
                    continue
                raise FedsimError("async session stalled with clients in flight (bug)")
            await self._event(tl)
            if len(self.buffer) >= sc.server.buffer_size:
                await self._aggregate()
                if self.server.diverged():  # a result, not a crash: the run stops here
                    break
                await on_aggregated()
            if st.round < sc.rounds:
                self.dispatch(st.sim_time)
        for c in sorted(self.in_flight):  # still training when the run ended: never delivered
            self.session.cancel(c)
            self.in_flight[c].future.cancel()  # a task not yet sent is never sent
        await asyncio.gather(*(f.future for f in self.in_flight.values()), return_exceptions=True)

    async def _event(self, tl: Any) -> None:
        st, cfg = self.st, self.sc.server
        c = tl.client_id
        f = self.in_flight.pop(c)
        res = await f.future  # a drop may come before the result is known; its bytes are logged
        tau = self.version - f.version
        t_done = tl.t_up_end if tl.accepted else tl.t_dropped
        ok = self.ledger.trip(self.version + 1, f.dispatch, tl, res, t_done, staleness=tau)
        t_event = tl.t_up_end if ok else tl.t_dropped
        st.sim_time = max(st.sim_time, t_event if math.isfinite(t_event) else self.session.now)
        if ok:
            w = staleness_weight(cfg.staleness, cfg.staleness_exponent, tau)
            self.buffer.append(self.server.accept(c, res, staleness=tau, weight=w))

    async def _aggregate(self) -> None:
        taus = [r.staleness for r in self.buffer]
        extra = {"staleness_mean": float(np.mean(taus)), "staleness_max": int(max(taus))}
        self.ledger.out.event("aggregation", round=self.version + 1)  # real-time marks
        await self.ledger.close_round(self.version + 1, self.st.sim_time, self.buffer, extra)
        self.version += 1
        self.buffer = []

    # ---- checkpoint ------------------------------------------------------------------------
    async def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The schedule's state after an aggregation (the buffer is empty then)."""
        await asyncio.gather(*(f.future for f in self.in_flight.values()))
        flights, arrays = [], {}
        for c in sorted(self.in_flight):
            f = self.in_flight[c]
            d, res = f.dispatch, f.future.result()
            flights.append(
                {
                    "client": c,
                    "version": f.version,
                    "task_id": d.task.task_id,
                    "round": d.task.round,
                    "config": d.config,
                    "plan": [d.plan.downlink, d.plan.uplink, d.plan.config],
                    "down": [d.down_wire, d.down_payload],
                    "compute_s": d.compute_s,
                    "meta": res.meta,
                }
            )
            arrays[f"sched/{c}/update"] = np.frombuffer(to_blob(res.update), np.uint8)
            arrays[f"sched/{c}/state"] = np.frombuffer(to_blob(res.state), np.uint8)
            if d.received is not None:
                arrays[f"sched/{c}/received"] = np.frombuffer(
                    to_blob(pack_state(d.received)), np.uint8
                )
        meta = {
            "version": self.version,
            "draws": self.draws,
            "journal": self.journal,
            "flights": flights,
        }
        return meta, arrays

    def restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.version = int(meta["version"])
        self.draws = int(meta["draws"])
        self._replay(meta["journal"])
        loop = asyncio.get_running_loop()
        for fl in meta["flights"]:
            c = int(fl["client"])
            update = from_blob(arrays[f"sched/{c}/update"].tobytes())
            state = from_blob(arrays[f"sched/{c}/state"].tobytes())
            received = None
            if f"sched/{c}/received" in arrays:
                received = unpack_state(from_blob(arrays[f"sched/{c}/received"].tobytes()))
            down, up, cfg = fl["plan"]
            d = Dispatch(
                client=c,
                task=Task(fl["task_id"], fl["round"], c, [], [], {}),
                config=dict(fl["config"]),
                plan=RoundPlan({}, down, up, dict(cfg)),
                down_wire=int(fl["down"][0]),
                down_payload=int(fl["down"][1]),
                compute_s=float(fl["compute_s"]),
                received=received,
            )
            fut = loop.create_future()
            fut.set_result(TaskResult(fl["task_id"], fl["round"], c, update, state, fl["meta"]))
            self.in_flight[c] = Flight(d, int(fl["version"]), fut)
