"""The coordinator: selects clients, ships encoded models, collects encoded updates, runs the
network model over the real byte counts, aggregates what arrived, evaluates, logs.

One synchronous round (DESIGN.md §2):
  configure_round -> select (availability at the current simulated time, over-commit)
  -> encode the downlink payload once -> tasks to the executor -> real results
  -> network model: download, compute (FLOPs / device speed), upload, fair sharing
  -> accept arrivals -> decode accepted updates -> aggregate in client-id order
  -> evaluate -> metrics.jsonl / traffic.jsonl rows.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedsim.algorithms.base import ClientResult, load_state
from fedsim.codecs.pipeline import decode_tensors, encode_tensors, parse_codec
from fedsim.codecs.wire import pack_message, payload_bytes, unpack_message, wire_bytes
from fedsim.runtime import seeding
from fedsim.runtime.client import ClientRunner, readonly_tensor
from fedsim.runtime.executors import make_executor
from fedsim.runtime.flops import FlopModel
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


class Coordinator:
    def __init__(
        self,
        scenario: Any,
        out_dir: str | Path,
        *,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.scenario = scenario
        self.out_dir = Path(out_dir)
        self.progress = progress

    def run(self) -> dict[str, Any]:
        return asyncio.run(self._run())

    async def _run(self) -> dict[str, Any]:
        sc = self.scenario
        wall0 = time.perf_counter()
        torch.set_num_threads(sc.runtime.torch_threads)
        runner = ClientRunner(sc)  # the coordinator's own copy: data, partitions, model
        self.runner = runner
        model = runner.model
        algo = runner.algorithm
        global_state = algo.init_global(model)
        initial_full = {k: v.clone() for k, v in model.state_dict().items()}
        n_params = int(sum(p.numel() for p in model.parameters()))
        flop_model = FlopModel(model, tuple(runner.dataset.input_shape), sc.train.batch_size)
        net = build_network(sc)
        store = ClientStateStore()
        x_test = readonly_tensor(runner.dataset.x_test)
        y_test = readonly_tensor(runner.dataset.y_test)
        sizes = [len(p) for p in runner.partitions]

        out = RunOutputs(self.out_dir)
        net.write_devices(self.out_dir / "devices.json")
        resolved = dump_scenario(sc)
        write_text_atomic(self.out_dir / "scenario.toml", resolved)
        executor = make_executor(sc, lambda: runner, scenario_toml=resolved, on_event=out.event)
        await executor.start()
        out.event("start", wall=time.time())

        sim_time = 0.0
        best_acc: float | None = None
        final_acc: float | None = None
        final_loss: float | None = None
        totals = {"up": 0, "down": 0}
        task_seq = 0
        try:
            for rnd in range(1, sc.rounds + 1):
                wall_r = time.perf_counter()
                k = sc.clients.per_round
                online = net.online_clients(sim_time)
                m = min(len(online), math.ceil(k * sc.server.overcommit))
                rng = seeding.rng_for(sc.seed, seeding.SELECT, rnd)
                selected = (
                    sorted(int(c) for c in rng.choice(online, size=m, replace=False)) if m else []
                )

                plan = algo.configure_round(rnd, global_state)
                down_codec = parse_codec(plan.downlink)
                down_rng = seeding.rng_for(sc.seed, seeding.DOWNLINK, rnd)
                records, _ = encode_tensors(plan.payload, down_codec, down_rng, None)
                meta = {
                    "round": rnd,
                    "config": plan.config,
                    "uplink": plan.uplink,
                    "downlink": plan.downlink,
                }
                down_frames = pack_message("model", meta, records)
                down_wire, down_payload = wire_bytes(down_frames), payload_bytes(down_frames)

                tasks = []
                client_cfg = {}
                for c in selected:
                    client_cfg[c] = algo.client_config(rnd, c, net.device(c))
                    meta_c = {"client_config": client_cfg[c]} if client_cfg[c] else {}
                    tasks.append(
                        Task(task_seq, rnd, c, down_frames, pack_state(store.get(c)), meta_c)
                    )
                    task_seq += 1
                results = await executor.run(tasks)
                by_client = {r.client_id: r for r in results.values()}

                jobs = []
                for c in selected:
                    n_samp = samples_processed(
                        sizes[c], sc.train.batch_size, sc.train.local_epochs, sc.train.local_steps
                    )
                    per_sample = algo.train_flops_per_sample(
                        flop_model, {**plan.config, **client_cfg[c]}
                    )
                    compute_s = per_sample * n_samp / net.device_flops(c)
                    jobs.append((c, down_wire, compute_s, wire_bytes(by_client[c].update)))
                t_end, timelines = net.run_sync_round(
                    sim_time,
                    jobs,
                    accept_first=k if sc.server.overcommit > 1.0 else None,
                    deadline_s=sc.server.deadline,
                )

                accepted: list[ClientResult] = []
                up_bytes = down_bytes = 0
                dropped = 0
                losses = []
                for tl in sorted(timelines, key=lambda t: t.client_id):
                    c = tl.client_id
                    res = by_client[c]
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
                    )
                    if down_ok:
                        down_bytes += down_wire
                    up_w = wire_bytes(res.update)
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
                        **{k2: v for k2, v in res.meta.items() if k2.startswith("wall_")},
                    )
                    if not tl.accepted:
                        dropped += 1
                        continue
                    up_bytes += up_w
                    msg = unpack_message(res.update)
                    accepted.append(
                        ClientResult(
                            client_id=c,
                            tensors=decode_tensors(msg.tensors),
                            num_samples=int(msg.meta["num_samples"]),
                            train_loss=float(msg.meta["train_loss"]),
                            metrics=dict(msg.meta.get("metrics") or {}),
                        )
                    )
                    losses.append(float(msg.meta["train_loss"]))
                    store.commit(c, res.state)

                global_state = algo.aggregate(rnd, global_state, accepted)
                extra = algo.after_aggregate(rnd, global_state, accepted)
                sim_time = t_end
                totals["up"] += up_bytes
                totals["down"] += down_bytes

                row: dict[str, Any] = {
                    "round": rnd,
                    "sim_time": sim_time,
                    "selected": len(selected),
                    "aggregated": len(accepted),
                    "dropped": dropped,
                    "bytes_up": up_bytes,
                    "bytes_down": down_bytes,
                    "train_loss": float(np.mean(losses)) if losses else None,
                }
                if rnd % sc.eval.every == 0 or rnd == sc.rounds:
                    model.load_state_dict(initial_full)
                    load_state(model, global_state)
                    acc, loss = evaluate(model, x_test, y_test, sc.eval.batch_size)
                    row["test_accuracy"], row["test_loss"] = acc, loss
                    final_acc, final_loss = acc, loss
                    best_acc = acc if best_acc is None else max(best_acc, acc)
                row.update(extra)
                row["wall_time"] = time.perf_counter() - wall_r
                out.end_round(row)
                if self.progress:
                    self.progress(
                        {**row, "bytes_up_total": totals["up"], "bytes_down_total": totals["down"]}
                    )
        finally:
            await executor.close()

        model.load_state_dict(initial_full)
        load_state(model, global_state)
        summary = {
            "scenario": sc.name,
            "seed": sc.seed,
            "rounds": sc.rounds,
            "final_accuracy": final_acc,
            "final_loss": final_loss,
            "best_accuracy": best_acc,
            "sim_time_total": sim_time,
            "wall_time_total": time.perf_counter() - wall0,
            "bytes_up_total": totals["up"],
            "bytes_down_total": totals["down"],
            "model_params": n_params,
            "model_sha256": model_sha256(model.state_dict()),
            "codec": {"uplink": sc.codec.uplink, "downlink": sc.codec.downlink},
            "versions": versions(),
        }
        out.event("end", wall=time.time())
        out.close()
        write_json_atomic(self.out_dir / "summary.json", summary)
        return summary
