"""The coordinator: set-up, the loop, the checkpoint cadence, the summary.

The work of a round lives elsewhere: `server.py` (tasks, acceptance, aggregation through the
method, checkpointable state), `ledger.py` (traffic and metrics rows), and the schedules
`schedule/sync.py` (synchronous rounds) and `schedule/fedbuff.py` (FedBuff async). Clients
run in an executor (`executors`): in process, ZeroMQ worker processes or Ray actors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedsim.experiment import Experiment
from fedsim.runtime import checkpoint as ckpt
from fedsim.runtime.client import ClientRunner
from fedsim.runtime.executors import InprocExecutor, make_executor
from fedsim.runtime.ledger import Ledger
from fedsim.runtime.model_io import save_model
from fedsim.runtime.netbuild import build_network
from fedsim.runtime.outputs import (
    RunOutputs,
    model_sha256,
    versions,
    write_json_atomic,
    write_text_atomic,
)
from fedsim.runtime.schedule.fedbuff import FedBuff
from fedsim.runtime.schedule.sync import sync_round
from fedsim.runtime.server import Server
from fedsim.scenario import dump_scenario

LOGS = ("metrics.jsonl", "traffic.jsonl", "events.jsonl")


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

    async def _run(self) -> dict[str, Any]:
        sc = self.scenario
        wall0 = time.perf_counter()
        exp = Experiment(sc)
        self.server = server = Server(sc, exp, build_network(sc))
        self.resolved = dump_scenario(sc)
        self.scen_hash = ckpt.scenario_hash(self.resolved)
        self.state = ckpt.RunState()
        restored = self._restore() if self.resume else None
        st = self.state
        if restored is None:
            for name in (*LOGS, "summary.json"):
                (self.out_dir / name).unlink(missing_ok=True)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        out = RunOutputs(self.out_dir, append=restored is not None)
        out.traffic.seq = st.traffic_seq
        server.net.write_devices(self.out_dir / "devices.json")
        write_text_atomic(self.out_dir / "scenario.toml", self.resolved)
        if restored is not None:
            for name, why in self._skipped:  # newest first: damaged ones passed over
                out.event("checkpoint_skipped", checkpoint=name, reason=why)
            out.event("resume", round=st.round, checkpoint=restored.name)
        # the client role: its own algorithm instance, also in process
        executor = make_executor(
            sc, lambda: ClientRunner(sc, exp), scenario_toml=self.resolved, on_event=out.event
        )
        is_async = sc.server.mode == "async"
        ledger = Ledger(
            out,
            st,
            server,
            # with clients in other processes, evaluate in a thread while they train
            defer_eval=not isinstance(executor, InprocExecutor),
            progress=self.progress,
        )
        status = "completed"
        try:
            await executor.start()
            out.event("start")
            if is_async:
                sched = FedBuff(server, executor, ledger, st)
                if restored is not None and st.schedule:
                    sched.restore(st.schedule, self._sched_arrays)
                await sched.run(lambda: self._maybe_checkpoint(out, sched.state, ledger))
            else:
                while st.round < sc.rounds:
                    await sync_round(st.round + 1, server, executor, ledger, st)
                    if server.diverged():
                        status = "diverged"
                        break
                    await self._maybe_checkpoint(out, None, ledger)
            await ledger.resolve()
        finally:
            await executor.close()
            ledger.close()
            server.close()
        if status != "diverged" and server.diverged():
            status = "diverged"
        return self._summary(out, wall0, status, restored is not None)

    # ---- checkpoints ---------------------------------------------------------------------
    def _restore(self) -> Path | None:
        """Load the newest checkpoint of out_dir, if any; cut the logs back to it."""
        self._skipped: list[tuple[str, str]] = []
        found = ckpt.latest_valid(
            self.out_dir / "checkpoints",
            self.scen_hash,
            on_skip=lambda p, why: self._skipped.append((p.name, why)),
        )
        if found is None:
            return None
        path, (state, global_state, clients, arrays) = found
        self.state = state
        self.server.restore(global_state, state.algo_meta, clients, arrays)
        self._sched_arrays = {k: v for k, v in arrays.items() if k.startswith("sched/")}
        ckpt.truncate_logs(self.out_dir, state.offsets)
        ckpt.trim_torn_tail(self.out_dir / "events.jsonl")
        return path

    async def _maybe_checkpoint(
        self, out: RunOutputs, schedule_state: Any, ledger: Ledger | None = None
    ) -> None:
        st, every = self.state, self.scenario.runtime.checkpoint_every
        if not every or not (st.round % every == 0 or st.round == self.scenario.rounds):
            return
        if ledger is not None:
            await ledger.resolve()
        sched_arrays: dict = {}
        st.schedule = {}
        if schedule_state is not None:
            st.schedule, sched_arrays = await schedule_state()
        # events.jsonl is machinery history (crashes, resumes): kept whole, never cut back
        st.offsets = {
            "metrics.jsonl": out.metrics.tell(),
            "traffic.jsonl": out.traffic_writer.tell(),
        }
        st.traffic_seq = out.traffic.seq
        st.algo_meta, clients, arrays = self.server.checkpoint_parts()
        ckpt.save(
            self.out_dir / "checkpoints",
            st,
            self.server.global_state,
            clients,
            {**arrays, **sched_arrays},
            self.scen_hash,
        )

    # ---- the summary ---------------------------------------------------------------------
    def _summary(self, out: RunOutputs, wall0: float, status: str, resumed: bool) -> dict[str, Any]:
        sc, st, server = self.scenario, self.state, self.server
        model = server.final_model()
        save_model(self.out_dir / "model.safetensors", model.state_dict())
        summary = {
            "scenario": sc.name,
            "seed": sc.seed,
            "rounds": sc.rounds,
            "status": status,
            "rounds_completed": st.round,
            "empty_rounds": st.empty_rounds,
            "final_accuracy": st.final_acc,
            "final_loss": st.final_loss,
            "best_accuracy": st.best_acc,
            "sim_time_total": st.sim_time,
            "wall_time_total": time.perf_counter() - wall0,
            "bytes_up_total": st.bytes_up,
            "bytes_down_total": st.bytes_down,
            "energy_j_total": st.energy_j,
            "model_params": server.n_params,
            "model_sha256": model_sha256(model.state_dict()),
            "codec": {"uplink": sc.codec.uplink, "downlink": sc.codec.downlink},
            "algorithm": sc.algorithm.name,
            "mode": sc.server.mode,
            "resumed": resumed,
            "versions": versions(),
        }
        if status == "completed":
            summary.update(server.algo.summary_extra(model, server.experiment.dataset))
            if sc.eval.ptq:
                from fedsim.eval.ptq import ptq_table

                summary["ptq"] = ptq_table(model, server.experiment.dataset, list(sc.eval.ptq))
        out.event("end", status=status)
        out.close()
        write_json_atomic(self.out_dir / "summary.json", summary)
        return summary


__all__ = ["Coordinator"]
