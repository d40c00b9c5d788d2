"""The client actor's work: one task in, one result out.

A `ClientRunner` lives in every process that trains clients (the coordinator's own process
for `inproc`, each worker process otherwise). It holds no client state between tasks: the
state a client needs (error-feedback residuals, an algorithm's per-client tensors) arrives
with the task and leaves with the result, and the coordinator commits it only when it
accepts the result. So any runner can train any client and get the same bytes.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from fedsim.algorithms.base import ClientContext, ClientUpdate, State, Uplink, load_state
from fedsim.codecs.pipeline import decode_tensors
from fedsim.codecs.wire import pack_message, unpack_message
from fedsim.experiment import Experiment
from fedsim.runtime import seeding
from fedsim.runtime.protocol import Task, TaskResult, pack_state, unpack_state

CODEC_PREFIX = "codec/"
ALGO_PREFIX = "algo/"
DOWN_PREFIX = "down/"  # the model this client last received (downlink error feedback)


def split_state(state: dict[str, np.ndarray]) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Flat state names -> (codec state per tensor, algorithm state)."""
    codec: dict[str, dict] = {}
    algo: dict[str, np.ndarray] = {}
    for k, v in state.items():
        if k.startswith(DOWN_PREFIX):
            continue
        if k.startswith(CODEC_PREFIX):
            tensor, _, key = k[len(CODEC_PREFIX) :].rpartition("#")
            codec.setdefault(tensor, {})[key] = v
        elif k.startswith(ALGO_PREFIX):
            algo[k[len(ALGO_PREFIX) :]] = v
    return codec, algo


def model_received(decoded: State, meta: dict[str, Any], reference: dict[str, np.ndarray]) -> State:
    """The model a client holds after a downlink message: the decoded tensors, or — with
    downlink error feedback (meta "reference") — its previous model plus the decoded
    difference (docs/codecs.md, "Downlink error feedback")."""
    if not meta.get("reference"):
        return decoded
    out = {}
    for k, d in decoded.items():
        ref = reference.get(k)
        out[k] = (d if ref is None else ref.reshape(d.shape) + d).astype(np.float32)
    return out


def join_state(codec: dict[str, dict | None], algo: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for tensor, st in codec.items():
        for key, v in (st or {}).items():
            out[f"{CODEC_PREFIX}{tensor}#{key}"] = np.asarray(v)
    for k, v in algo.items():
        out[f"{ALGO_PREFIX}{k}"] = np.asarray(v)
    return out


class ClientRunner:
    """The client role: its own algorithm instance and model, never the server's."""

    def __init__(self, scenario: Any, experiment: Experiment | None = None):
        self.scenario = scenario
        self.experiment = exp = experiment if experiment is not None else Experiment(scenario)
        self.algorithm = exp.algorithm()
        self.dataset = exp.dataset
        self.partitions = exp.partitions
        self.model = exp.new_model(self.algorithm).to(exp.device)
        # full initial state incl. non-communicated buffers: reset before every task so a
        # runner's history never leaks into the next client's training
        self._initial = {k: v.clone() for k, v in self.model.state_dict().items()}
        self._x = exp.x_train
        self._y = exp.y_train

    def run(self, task: Task) -> TaskResult:
        t0 = time.perf_counter()
        ctx, uplink, codec_state = self._begin(task)
        t1 = time.perf_counter()
        update = self.algorithm.local_train(ctx)
        t2 = time.perf_counter()
        return self._finish(task, ctx, update, uplink, codec_state, (t1 - t0, t2 - t1))

    def run_many(self, tasks: list[Task], kernels: str | None = None) -> list[TaskResult]:
        """Tasks in groups of `runtime.batch_clients`, each group's clients trained together
        (fedsim/runtime/batched.py; `kernels` as there, default `runtime.batch_kernels`);
        results in task order."""
        from fedsim.runtime.batched import train_together

        if kernels is None:
            chosen = getattr(self.scenario.runtime, "batch_kernels", "auto")
            kernels = None if chosen == "auto" else chosen

        size = max(1, int(getattr(self.scenario.runtime, "batch_clients", 1)))
        out: list[TaskResult] = []
        for at in range(0, len(tasks), size):
            group = tasks[at : at + size]
            if len(group) == 1:
                out.append(self.run(group[0]))
                continue
            t0 = time.perf_counter()
            begun, starts = [], []
            for task in group:
                begun.append(self._begin(task))
                starts.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
            t1 = time.perf_counter()
            ctxs = [ctx for ctx, _, _ in begun]
            updates = train_together(self.algorithm, self.model, ctxs, starts, kernels)
            t2 = time.perf_counter()
            share = ((t1 - t0) / len(group), (t2 - t1) / len(group))  # wall time split evenly
            for task, (ctx, uplink, codec_state), update in zip(group, begun, updates, strict=True):
                out.append(self._finish(task, ctx, update, uplink, codec_state, share))
        return out

    def _begin(self, task: Task) -> tuple[ClientContext, str, dict]:
        """Decode the task, load the received model, seed the client: its context."""
        msg = unpack_message(task.payload)
        config = dict(msg.meta.get("config") or {})
        config.update(task.meta.get("client_config") or {})
        uplink = str(msg.meta.get("uplink", "fp32"))
        state_in = unpack_state(task.state)
        codec_state, algo_state = split_state(state_in)
        reference = {
            k[len(DOWN_PREFIX) :]: v for k, v in state_in.items() if k.startswith(DOWN_PREFIX)
        }
        global_state = model_received(decode_tensors(msg.tensors), msg.meta, reference)

        self.model.load_state_dict(self._initial)
        load_state(self.model, global_state)
        seed = seeding.derive_seed(self.scenario.seed, seeding.TRAIN, task.round, task.client_id)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        idx = torch.from_numpy(self.partitions[task.client_id]).to(self._x.device)
        ctx = ClientContext(
            round=task.round,
            client_id=task.client_id,
            model=self.model,
            x=self._x[idx],
            y=self._y[idx],
            config=config,
            global_state=global_state,
            seed=seed,
            generator=gen,
            state=algo_state,
            scenario=self.scenario,
        )
        return ctx, uplink, codec_state

    def _finish(
        self,
        task: Task,
        ctx: ClientContext,
        update: ClientUpdate,
        uplink: str,
        codec_state: dict,
        walls: tuple[float, float],
    ) -> TaskResult:
        """Encode the update with the client's uplink RNG and codec state: the result."""
        t2 = time.perf_counter()
        rng = seeding.rng_for(self.scenario.seed, seeding.UPLINK, task.round, task.client_id)
        enc = self.algorithm.encode_update(ctx, update, Uplink(uplink, rng, codec_state))
        records, new_codec_state = enc.records, enc.state
        update.metrics.update(enc.metrics)
        meta = {
            "round": task.round,
            "client": task.client_id,
            "num_samples": int(update.num_samples),
            "train_loss": float(update.train_loss),
            "metrics": {k: float(v) for k, v in update.metrics.items()},
        }
        frames = pack_message("update", meta, records)
        state = join_state(new_codec_state or {}, update.state)
        t3 = time.perf_counter()
        return TaskResult(
            task.task_id,
            task.round,
            task.client_id,
            frames,
            pack_state(state) if state else [],
            {"wall_decode_s": walls[0], "wall_train_s": walls[1], "wall_encode_s": t3 - t2},
        )
