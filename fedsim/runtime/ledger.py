"""The ledger: one place where timelines, bytes and energy become traffic and metrics rows.

Both schedules report each client's trip (`trip`) and close each aggregation (`close_round`)
here, so a synchronous round and a FedBuff aggregation write the same fields the same way.
Evaluation of the aggregated model may be deferred to a thread while the next round's tasks
are with other processes; its row is written before any later traffic (`resolve`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from fedsim.codecs.wire import payload_bytes, wire_bytes
from fedsim.network.energy import sum_energy
from fedsim.runtime.checkpoint import RunState
from fedsim.runtime.outputs import RunOutputs
from fedsim.runtime.server import Dispatch, Server


class Ledger:
    def __init__(
        self,
        out: RunOutputs,
        state: RunState,
        server: Server,
        *,
        defer_eval: bool,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.out = out
        self.state = state
        self.server = server
        self.defer_eval = defer_eval
        self.progress = progress
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._eval_model = None
        self._pending: tuple | None = None
        self.open_round()

    def open_round(self) -> None:
        self.selected = self.dropped = self.up = self.down = 0
        self.energies: list[dict[str, float]] = []
        self.wall0 = time.perf_counter()

    # ---- one client's trip ---------------------------------------------------------------
    def trip(self, rnd: int, d: Dispatch, tl: Any, res: Any, t_end: float, **extra: Any) -> bool:
        """Traffic rows of one client's model and update and its energy; True if accepted.
        Per-message `energy_j` is the radio energy of that transfer (compute, tails and idle
        are in the metrics rows)."""
        net, c, plan = self.server.net, d.client, d.plan
        up_w = wire_bytes_of(res)
        e = net.energy(c, tl, d.down_wire, up_w, d.compute_s, t_end)
        self.energies.append(e)
        down_ok = tl.t_down_end is not None and math.isfinite(tl.t_down_end)
        if down_ok:
            self.server.delivered(d)
        cfg = {"client_config": d.config} if d.config else {}
        self.out.traffic.message(
            round=rnd,
            kind="model",
            src="server",
            dst=f"client/{c}",
            client=c,
            codec=plan.downlink,
            payload_bytes=d.down_payload,
            wire_bytes=d.down_wire,
            t_send=tl.t_down_start,
            t_deliver=tl.t_down_end if down_ok else None,
            dropped=not down_ok,
            reason=None if down_ok else tl.reason,
            energy_j=e["energy_down_j"],
        )
        if res is not None:
            self.out.traffic.message(
                round=rnd,
                kind="update",
                src=f"client/{c}",
                dst="server",
                client=c,
                codec=plan.uplink,
                payload_bytes=payload_bytes_of(res),
                wire_bytes=up_w,
                t_send=tl.t_up_start,
                t_deliver=tl.t_up_end if tl.accepted else None,
                dropped=not tl.accepted,
                reason=None if tl.accepted else tl.reason,
                t_compute_end=tl.t_compute_end,
                energy_j=e["energy_up_j"],
                **cfg,
                **extra,
                **{k: v for k, v in res.meta.items() if k.startswith("wall_")},
            )
        self.down += d.down_wire if down_ok else 0
        self.up += up_w if tl.accepted else 0
        self.dropped += 0 if tl.accepted else 1
        return bool(tl.accepted)

    # ---- one aggregation -----------------------------------------------------------------
    async def close_round(
        self, rnd: int, sim_time: float, accepted: list, extra_fields: dict[str, Any]
    ) -> None:
        """Aggregate through the method, then the metrics row (evaluated or deferred)."""
        await self.resolve()  # metrics rows stay in order (a deferred one is written first)
        st, sc = self.state, self.server.scenario
        method_extra = self.server.aggregate(rnd, accepted)
        st.sim_time = sim_time
        st.bytes_up += self.up
        st.bytes_down += self.down
        losses = [r.train_loss for r in accepted]
        row = {
            "round": rnd,
            "sim_time": sim_time,
            "selected": self.selected,
            "aggregated": len(accepted),
            "dropped": self.dropped,
            "bytes_up": self.up,
            "bytes_down": self.down,
            **extra_fields,
            **sum_energy(self.energies),
            "train_loss": finite(float(np.mean(losses))) if losses else None,
        }
        st.energy_j += row["energy_j"]
        st.round = rnd
        wall0 = self.wall0
        self.open_round()
        if not accepted:
            st.empty_rounds += 1
        try:
            if not (rnd % sc.eval.every == 0 or rnd == sc.rounds):
                self._write(row, method_extra, time.perf_counter() - wall0, None)
                return
            if self.defer_eval:
                if self._pool is None:
                    self._pool = concurrent.futures.ThreadPoolExecutor(
                        1, thread_name_prefix="fedsim-eval"
                    )
                    self._eval_model = copy.deepcopy(self.server.model)
                state = {k: v.copy() for k, v in self.server.global_state.items()}
                fut = self._pool.submit(self._timed_eval, self._eval_model, state)
                self._pending = (row, method_extra, time.perf_counter() - wall0, fut)
                return
            ev = self._timed_eval(self.server.model, self.server.global_state)
            self._write(row, method_extra, time.perf_counter() - wall0, ev)
        finally:  # the next row's real time starts once this one is written or handed off
            self.wall0 = time.perf_counter()

    def _timed_eval(self, model: Any, state: dict) -> tuple[float, float, float]:
        t0 = time.perf_counter()
        acc, loss = self.server.evaluate(model, state)
        return acc, loss, time.perf_counter() - t0

    async def resolve(self) -> None:
        """Write a deferred evaluation's row (before any later traffic)."""
        if self._pending is None:
            return
        row, extra, own_s, fut = self._pending
        self._pending = None
        ev = await asyncio.wrap_future(fut)
        self._write(row, extra, own_s + ev[2], ev)

    def _write(self, row: dict, extra: dict, wall_s: float, ev: tuple | None) -> None:
        st = self.state
        if ev is not None:
            acc, loss, _ = ev
            loss = finite(loss)
            row["test_accuracy"], row["test_loss"] = acc, loss
            st.final_acc, st.final_loss = acc, loss
            if math.isfinite(acc):
                st.best_acc = acc if st.best_acc is None else max(st.best_acc, acc)
        row.update(extra)
        row["wall_time"] = wall_s
        self.out.end_round(row)
        if self.progress:
            self.progress({**row, "bytes_up_total": st.bytes_up, "bytes_down_total": st.bytes_down})

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def finite(x: float) -> float | None:
    """JSON holds no NaN or Infinity: a diverged value is written as null."""
    return x if math.isfinite(x) else None


def wire_bytes_of(res: Any) -> int:
    return wire_bytes(res.update) if res is not None else 0


def payload_bytes_of(res: Any) -> int:
    return payload_bytes(res.update)
