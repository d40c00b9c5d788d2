"""The coordinator: selects clients, ships encoded models, collects encoded updates, runs the
network model over the real byte counts, aggregates what arrived, evaluates, logs.

One synchronous round (DESIGN.md §2):
  configure_round -> select (availability at the current simulated time, over-commit)
  -> encode the downlink payload once -> tasks to the executor -> real results
  -> network model: download, compute (FLOPs / device speed), upload, fair sharing
  -> accept arrivals -> decode accepted updates -> aggregate in client-id order
  -> evaluate -> metrics.jsonl / traffic.jsonl rows -> checkpoint.

Asynchronous mode (FedBuff, Nguyen et al. AISTATS 2022) keeps `server.concurrency` clients
in flight; the network model releases arrivals in simulated-time order, conservatively;
every `server.buffer_size` arrivals the server applies the staleness-weighted mean update.
Each aggregation is one "round" in metrics.jsonl.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedsim.algorithms.base import ClientResult, load_state
from fedsim.codecs.wire import pack_message, payload_bytes, unpack_message, wire_bytes
from fedsim.errors import FedsimError
from fedsim.network.energy import sum_energy
from fedsim.runtime import checkpoint as ckpt
from fedsim.runtime import seeding
from fedsim.runtime.client import ClientRunner, readonly_tensor
from fedsim.runtime.executors import InprocExecutor, make_executor
from fedsim.runtime.flops import FlopModel
from fedsim.runtime.lazy import LazyTensors
from fedsim.runtime.netbuild import build_network
from fedsim.runtime.outputs import (
    RunOutputs,
    model_sha256,
    versions,
    write_json_atomic,
    write_text_atomic,
)
from fedsim.runtime.protocol import Task, pack_state
from fedsim.runtime.state import ClientStateStore
from fedsim.scenario import dump_scenario

LOGS = ("metrics.jsonl", "traffic.jsonl", "events.jsonl")
IDLE_RETRY_S = 60.0  # with no client online, look again this much later (simulated)


def samples_processed(n: int, batch: int, epochs: int, steps: int | None) -> int:
    """Exactly how many samples local training touches (the last batch of an epoch is short)."""
    if steps is None:
        return epochs * n
    per_epoch = math.ceil(n / batch)
    total = 0
    for s in range(steps):
        k = s % per_epoch
        total += min(batch, n - k * batch)
    return total


def evaluate(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int
) -> tuple[float, float]:
    model.eval()
    correct = 0
    loss = 0.0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            out = model(x[i : i + batch])
            loss += float(torch.nn.functional.cross_entropy(out, y[i : i + batch], reduction="sum"))
            correct += int((out.argmax(1) == y[i : i + batch]).sum())
    return correct / len(y), loss / len(y)


def staleness_weight(kind: str, exponent: float, tau: int) -> float:
    """FedBuff's staleness scaling: constant 1, polynomial (1+τ)^-a, or hinge."""
    if kind == "constant":
        return 1.0
    if kind == "polynomial":
        return float((1.0 + tau) ** -exponent)
    return 1.0 if tau <= 10 else float(1.0 / (exponent * (tau - 10) + 1.0))  # hinge at b = 10


class Coordinator:
    def __init__(
        self,
        scenario: Any,
        out_dir: str | Path,
        *,
        progress: Callable[[dict[str, Any]], None] | None = None,
        resume: bool = False,
    ):
        self.scenario = scenario
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.resume = resume

    def run(self) -> dict[str, Any]:
        return asyncio.run(self._run())

    # ---- setup ----------------------------------------------------------------------------
    def _setup(self) -> None:
        sc = self.scenario
        torch.set_num_threads(sc.runtime.torch_threads)
        self.runner = runner = ClientRunner(
            sc
        )  # the coordinator's own copy: data, partitions, model
        self.model = runner.model
        self.algo = runner.algorithm
        self.global_state = self.algo.init_global(self.model)
        self.initial_full = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.n_params = int(sum(p.numel() for p in self.model.parameters()))
        self.flop_model = FlopModel(
            self.model, tuple(runner.dataset.input_shape), sc.train.batch_size
        )
        self.net = build_network(sc)
        rt = sc.runtime
        disk = rt.state_store == "disk"
        self.store = ClientStateStore(rt.state_dir if disk else None, disk=disk)
        self._pending_eval: tuple | None = None
        self._eval_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.x_test = readonly_tensor(runner.dataset.x_test)
        self.y_test = readonly_tensor(runner.dataset.y_test)
        self.sizes = [len(p) for p in runner.partitions]
        self.resolved = dump_scenario(sc)
        self.scen_hash = ckpt.scenario_hash(self.resolved)
        self.state = ckpt.RunState()

    def _restore(self) -> bool:
        """Load the latest checkpoint of out_dir, if any; cut the logs back to it."""
        path = ckpt.latest(self.out_dir / "checkpoints")
        if path is None:
            return False
        state, global_state, clients, algo_arrays = ckpt.load(path, self.scen_hash)
        self.state = state
        self.global_state = global_state
        for c, st in clients.items():
            self.store.restore(c, st)
        self.algo.load_server_state(state.algo_meta, algo_arrays)
        ckpt.truncate_logs(self.out_dir, state.offsets)
        ckpt.trim_torn_tail(self.out_dir / "events.jsonl")
        return True

    def _checkpoint(self, out: RunOutputs) -> None:
        # events.jsonl is machinery history (crashes, resumes): kept whole, never cut back
        self.state.offsets = {
            "metrics.jsonl": out.metrics.tell(),
            "traffic.jsonl": out.traffic_writer.tell(),
        }
        self.state.traffic_seq = out.traffic.seq
        meta, arrays = self.algo.server_state()
        self.state.algo_meta = meta
        clients = {c: self.store.get(c) for c in self.store.clients()}
        ckpt.save(
            self.out_dir / "checkpoints",
            self.state,
            self.global_state,
            clients,
            arrays,
            self.scen_hash,
        )

    # ---- the run --------------------------------------------------------------------------
    async def _run(self) -> dict[str, Any]:
        sc = self.scenario
        wall0 = time.perf_counter()
        self._setup()
        resumed = False
        if self.resume:
            resumed = self._restore()
        if not resumed:
            for name in (*LOGS, "summary.json"):
                (self.out_dir / name).unlink(missing_ok=True)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        out = RunOutputs(self.out_dir, append=resumed)
        out.traffic.seq = self.state.traffic_seq
        self.net.write_devices(self.out_dir / "devices.json")
        write_text_atomic(self.out_dir / "scenario.toml", self.resolved)
        if resumed:
            out.event("resume", round=self.state.round)
        executor = make_executor(
            sc, lambda: self.runner, scenario_toml=self.resolved, on_event=out.event
        )
        self._overlap_eval = not isinstance(executor, InprocExecutor)
        try:
            await executor.start()
            out.event("start")
            if sc.server.mode == "async":
                await self._run_async(executor, out)
            else:
                while self.state.round < sc.rounds:
                    await self._sync_round(self.state.round + 1, executor, out)
                    every = sc.runtime.checkpoint_every
                    if every and (self.state.round % every == 0 or self.state.round == sc.rounds):
                        await self._resolve_eval()
                        self._checkpoint(out)
                await self._resolve_eval()
        finally:
            await executor.close()
            self.store.close()
            if self._eval_pool is not None:
                self._eval_pool.shutdown(wait=True)

        st = self.state
        self.model.load_state_dict(self.initial_full)
        load_state(self.model, self.global_state)
        summary = {
            "scenario": sc.name,
            "seed": sc.seed,
            "rounds": sc.rounds,
            "final_accuracy": st.final_acc,
            "final_loss": st.final_loss,
            "best_accuracy": st.best_acc,
            "sim_time_total": st.sim_time,
            "wall_time_total": time.perf_counter() - wall0,
            "bytes_up_total": st.bytes_up,
            "bytes_down_total": st.bytes_down,
            "energy_j_total": st.energy_j,
            "model_params": self.n_params,
            "model_sha256": model_sha256(self.model.state_dict()),
            "codec": {"uplink": sc.codec.uplink, "downlink": sc.codec.downlink},
            "algorithm": sc.algorithm.name,
            "mode": sc.server.mode,
            "resumed": resumed,
            "versions": versions(),
        }
        summary.update(self.algo.summary_extra(self.model, self.runner.dataset))
        if sc.eval.ptq:
            from fedsim.eval.ptq import ptq_table

            summary["ptq"] = ptq_table(self.model, self.runner.dataset, list(sc.eval.ptq))
        out.event("end")
        out.close()
        write_json_atomic(self.out_dir / "summary.json", summary)
        return summary

    # ---- pieces shared by both modes ------------------------------------------------------------
    def _encode_downlink(self, rnd: int) -> tuple[Any, list, int, int]:
        plan = self.algo.configure_round(rnd, self.global_state)
        down_rng = seeding.rng_for(self.scenario.seed, seeding.DOWNLINK, rnd)
        records = self.algo.encode_payload(rnd, plan, down_rng)
        meta = {
            "round": rnd,
            "config": plan.config,
            "uplink": plan.uplink,
            "downlink": plan.downlink,
        }
        frames = pack_message("model", meta, records)
        return plan, frames, wire_bytes(frames), payload_bytes(frames)

    def _make_task(self, rnd: int, c: int, plan: Any, down_frames: list) -> tuple[Task, dict]:
        cfg = self.algo.client_config(rnd, c, self.net.device(c))
        meta = {"client_config": cfg} if cfg else {}
        task = Task(self.state.task_seq, rnd, c, down_frames, pack_state(self.store.get(c)), meta)
        self.state.task_seq += 1
        return task, cfg

    def _compute_s(self, c: int, plan: Any, cfg: dict) -> float:
        t = self.scenario.train
        n_samp = samples_processed(self.sizes[c], t.batch_size, t.local_epochs, t.local_steps)
        per_sample = self.algo.train_flops_per_sample(self.flop_model, {**plan.config, **cfg})
        return per_sample * n_samp / self.net.device_flops(c)

    def _log_client(
        self,
        out: RunOutputs,
        rnd: int,
        tl: Any,
        plan: Any,
        down: tuple[int, int],
        res: Any,
        energy: dict[str, float] | None = None,
        **extra: Any,
    ) -> tuple[bool, int, int]:
        """Traffic rows for one client's model and update; returns (accepted, down, up) bytes.
        Per-message `energy_j` is the radio energy of that transfer (compute, tails and idle
        are in the metrics rows)."""
        c = tl.client_id
        e_down = {"energy_j": energy["energy_down_j"]} if energy else {}
        e_up = {"energy_j": energy["energy_up_j"]} if energy else {}
        down_wire, down_payload = down
        down_ok = tl.t_down_end is not None and math.isfinite(tl.t_down_end)
        out.traffic.message(
            round=rnd,
            kind="model",
            src="server",
            dst=f"client/{c}",
            client=c,
            codec=plan.downlink,
            payload_bytes=down_payload,
            wire_bytes=down_wire,
            t_send=tl.t_down_start,
            t_deliver=tl.t_down_end if down_ok else None,
            dropped=not down_ok,
            reason=None if down_ok else tl.reason,
            **e_down,
        )
        up_w = wire_bytes(res.update) if res is not None else 0
        if res is not None:
            out.traffic.message(
                round=rnd,
                kind="update",
                src=f"client/{c}",
                dst="server",
                client=c,
                codec=plan.uplink,
                payload_bytes=payload_bytes(res.update),
                wire_bytes=up_w,
                t_send=tl.t_up_start,
                t_deliver=tl.t_up_end if tl.accepted else None,
                dropped=not tl.accepted,
                reason=None if tl.accepted else tl.reason,
                t_compute_end=tl.t_compute_end,
                **e_up,
                **extra,
                **{k: v for k, v in res.meta.items() if k.startswith("wall_")},
            )
        return tl.accepted, down_wire if down_ok else 0, up_w if tl.accepted else 0

    def _accept(self, c: int, res: Any, staleness: int = 0) -> ClientResult:
        msg = unpack_message(res.update)
        self.store.commit(c, res.state)
        return ClientResult(
            client_id=c,
            tensors=LazyTensors(msg.tensors),  # decoded tensor by tensor as aggregation reads
            num_samples=int(msg.meta["num_samples"]),
            train_loss=float(msg.meta["train_loss"]),
            metrics=dict(msg.meta.get("metrics") or {}),
            staleness=staleness,
        )

    def _finish_round(
        self,
        out: RunOutputs,
        rnd: int,
        row: dict[str, Any],
        accepted: list[ClientResult],
        wall_r: float,
        *,
        defer: bool = False,
    ) -> None:
        """Round metrics; with `defer`, the evaluation runs in a thread while the next round's
        tasks are with the workers (it reads only a copy of the aggregated model) and the row
        is written when `_resolve_eval` collects it, before the next round's traffic."""
        sc, st = self.scenario, self.state
        extra = self.algo.after_aggregate(rnd, self.global_state, accepted)
        losses = [r.train_loss for r in accepted]
        row["train_loss"] = float(np.mean(losses)) if losses else None
        st.round = rnd
        if not (rnd % sc.eval.every == 0 or rnd == sc.rounds):
            self._write_row(out, row, extra, wall_r, None)
            return
        if defer:
            if self._eval_pool is None:
                self._eval_pool = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix="fedsim-eval"
                )
                self._eval_model = copy.deepcopy(self.model)
            state = {k: v.copy() for k, v in self.global_state.items()}
            fut = self._eval_pool.submit(self._evaluate, self._eval_model, state)
            # the round's own real time: its work so far plus, later, the evaluation itself
            self._pending_eval = (out, row, extra, time.perf_counter() - wall_r, fut)
            return
        self._write_row(out, row, extra, wall_r, self._evaluate(self.model, self.global_state))

    def _evaluate(
        self, model: torch.nn.Module, state: dict[str, np.ndarray]
    ) -> tuple[float, float, float]:
        t0 = time.perf_counter()
        model.load_state_dict(self.initial_full)
        load_state(model, state)
        acc, loss = evaluate(model, self.x_test, self.y_test, self.scenario.eval.batch_size)
        return acc, loss, time.perf_counter() - t0

    async def _resolve_eval(self) -> None:
        if self._pending_eval is None:
            return
        out, row, extra, own_s, fut = self._pending_eval
        self._pending_eval = None
        ev = await asyncio.wrap_future(fut)
        self._write_row(out, row, extra, None, ev, wall_s=own_s + ev[2])

    def _write_row(
        self,
        out: RunOutputs,
        row: dict[str, Any],
        extra: dict[str, Any],
        wall_r: float | None,
        ev: tuple | None,
        *,
        wall_s: float | None = None,
    ) -> None:
        """Write a round's row. `wall_time` is the round's own real seconds (with a deferred
        evaluation: its work until the hand-off plus the evaluation's own time)."""
        st = self.state
        if ev is not None:
            acc, loss, _ = ev
            row["test_accuracy"], row["test_loss"] = acc, loss
            st.final_acc, st.final_loss = acc, loss
            st.best_acc = acc if st.best_acc is None else max(st.best_acc, acc)
        row.update(extra)
        row["wall_time"] = wall_s if wall_s is not None else time.perf_counter() - wall_r
        out.end_round(row)
        if self.progress:
            self.progress({**row, "bytes_up_total": st.bytes_up, "bytes_down_total": st.bytes_down})

    def _select(
        self, rnd: int, t: float, m: int, exclude: set[int] | frozenset = frozenset()
    ) -> list[int]:
        online = [c for c in self.net.online_clients(t) if c not in exclude]
        m = min(len(online), m)
        rng = seeding.rng_for(self.scenario.seed, seeding.SELECT, rnd)
        return sorted(int(c) for c in rng.choice(online, size=m, replace=False)) if m else []

    # ---- synchronous rounds -------------------------------------------------------------------
    async def _sync_round(self, rnd: int, executor: Any, out: RunOutputs) -> None:
        sc, st = self.scenario, self.state
        wall_r = time.perf_counter()
        out.event("round_start", round=rnd)  # real-time marks for throughput (benchmarks)
        k = sc.clients.per_round
        selected = self._select(rnd, st.sim_time, math.ceil(k * sc.server.overcommit))
        plan, down_frames, down_wire, down_payload = self._encode_downlink(rnd)
        tasks, cfgs = [], {}
        for c in selected:
            task, cfgs[c] = self._make_task(rnd, c, plan, down_frames)
            tasks.append(task)
        results = await executor.run(tasks)
        await self._resolve_eval()  # the previous round's row, before this round's traffic
        by_client = {r.client_id: r for r in results.values()}
        jobs = [
            (c, down_wire, self._compute_s(c, plan, cfgs[c]), wire_bytes(by_client[c].update))
            for c in selected
        ]
        if selected:
            t_end, timelines = self.net.run_sync_round(
                st.sim_time,
                jobs,
                accept_first=k if sc.server.overcommit > 1.0 else None,
                deadline_s=sc.server.deadline,
            )
        else:  # nobody online: the server waits and tries again
            t_end, timelines = st.sim_time + IDLE_RETRY_S, []
        accepted: list[ClientResult] = []
        up = down = dropped = 0
        comp = {c: cs for c, _, cs, _ in jobs}
        energies = []
        for tl in sorted(timelines, key=lambda t: t.client_id):
            c = tl.client_id
            e = self.net.energy(c, tl, down_wire, wire_bytes(by_client[c].update), comp[c], t_end)
            energies.append(e)
            extra = {"client_config": cfgs[c]} if cfgs[c] else {}
            ok, d, u = self._log_client(
                out, rnd, tl, plan, (down_wire, down_payload), by_client[c], energy=e, **extra
            )
            down += d
            up += u
            if ok:
                accepted.append(self._accept(tl.client_id, by_client[tl.client_id]))
            else:
                dropped += 1
        self.global_state = self.algo.aggregate(rnd, self.global_state, accepted)
        st.sim_time = t_end
        st.bytes_up += up
        st.bytes_down += down
        row = {
            "round": rnd,
            "sim_time": st.sim_time,
            "selected": len(selected),
            "aggregated": len(accepted),
            "dropped": dropped,
            "bytes_up": up,
            "bytes_down": down,
            **sum_energy(energies),
        }
        st.energy_j += row["energy_j"]
        # overlap evaluation with the next round only when clients train elsewhere
        self._finish_round(out, rnd, row, accepted, wall_r, defer=self._overlap_eval)

    # ---- asynchronous buffered aggregation (FedBuff) ---------------------------------------------
    async def _run_async(self, executor: Any, out: RunOutputs) -> None:
        sc, st = self.scenario, self.state
        cfg = sc.server
        session = self.net.model.async_session(st.sim_time)
        version = 0  # global model version = aggregations so far
        in_flight: dict[
            int, tuple[int, Any, Any, tuple[int, int]]
        ] = {}  # c -> (version, plan, result, down)
        buffer: list[ClientResult] = []
        dispatches = 0
        pending_rows = {"selected": 0, "dropped": 0, "up": 0, "down": 0}
        energies: list[dict[str, float]] = []
        wall_r = time.perf_counter()

        async def dispatch(t: float) -> None:
            nonlocal dispatches
            want = cfg.concurrency - len(in_flight)
            if want <= 0:
                return
            dispatches += 1
            chosen = self._select(dispatches, t, want, exclude=set(in_flight))
            if not chosen:
                return
            plan, frames, dw, dp = self._encode_downlink(version + 1)
            tasks, cfgs = [], {}
            for c in chosen:
                task, cfgs[c] = self._make_task(version + 1, c, plan, frames)
                tasks.append(task)
            results = await executor.run(tasks)
            for r in results.values():
                c = r.client_id
                comp_s = self._compute_s(c, plan, cfgs[c])
                session.dispatch(c, t, dw, comp_s)
                in_flight[c] = (version, plan, r, (dw, dp), comp_s)
                session.complete(c, wire_bytes(r.update))
            pending_rows["selected"] += len(chosen)

        await dispatch(st.sim_time)
        while st.round < sc.rounds:
            tl = session.next_arrival()
            if tl is None:
                if not in_flight:  # nobody online: look again later
                    st.sim_time = max(st.sim_time, session.now) + IDLE_RETRY_S
                    session = self.net.model.async_session(st.sim_time)
                    await dispatch(st.sim_time)
                    continue
                raise FedsimError("async session stalled with clients in flight (bug)")
            c = tl.client_id
            v0, plan, res, down, comp_s = in_flight.pop(c)
            tau = version - v0
            t_done = tl.t_up_end if tl.accepted else tl.t_dropped
            e = self.net.energy(c, tl, down[0], wire_bytes(res.update), comp_s, t_done)
            energies.append(e)
            ok, d, u = self._log_client(
                out, version + 1, tl, plan, down, res, energy=e, staleness=tau
            )
            pending_rows["down"] += d
            pending_rows["up"] += u
            t_event = tl.t_up_end if ok else tl.t_dropped
            st.sim_time = max(st.sim_time, t_event if math.isfinite(t_event) else session.now)
            if ok:
                buffer.append(self._accept(c, res, staleness=tau))
            else:
                pending_rows["dropped"] += 1
            if len(buffer) >= cfg.buffer_size:
                rnd = version + 1
                self.global_state = self._apply_buffer(buffer)
                version += 1
                st.bytes_up += pending_rows["up"]
                st.bytes_down += pending_rows["down"]
                taus = [r.staleness for r in buffer]
                row = {
                    "round": rnd,
                    "sim_time": st.sim_time,
                    "selected": pending_rows["selected"],
                    "aggregated": len(buffer),
                    "dropped": pending_rows["dropped"],
                    "bytes_up": pending_rows["up"],
                    "bytes_down": pending_rows["down"],
                    "staleness_mean": float(np.mean(taus)),
                    "staleness_max": int(max(taus)),
                    **sum_energy(energies),
                }
                st.energy_j += row["energy_j"]
                energies = []
                self._finish_round(out, rnd, row, buffer, wall_r)
                wall_r = time.perf_counter()
                buffer = []
                pending_rows = {"selected": 0, "dropped": 0, "up": 0, "down": 0}
            if st.round < sc.rounds:
                await dispatch(st.sim_time)
        for c in sorted(in_flight):  # still training when the run ended: never delivered
            session.cancel(c)

    def _apply_buffer(self, buffer: list[ClientResult]) -> dict[str, np.ndarray]:
        """w ← w + η_g · (1/K) Σ_i s(τ_i) Δ_i, in client-id order (FedBuff, Algorithm 1)."""
        cfg = self.scenario.server
        buffer = sorted(buffer, key=lambda r: (r.client_id, r.staleness))
        out = {}
        for name, w in self.global_state.items():
            acc = np.zeros(w.shape, dtype=np.float64)
            for r in buffer:
                acc += (
                    staleness_weight(cfg.staleness, cfg.staleness_exponent, r.staleness)
                    * r.tensors[name]
                )
            out[name] = (w + cfg.server_lr * acc / len(buffer)).astype(np.float32)
        return out
