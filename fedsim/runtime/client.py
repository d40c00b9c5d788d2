"""The client actor's work: one task in, one result out.

A `ClientRunner` lives in every process that trains clients (the coordinator's own process
for `inproc`, each worker process otherwise). It holds no client state between tasks: the
state a client needs (error-feedback residuals, an algorithm's per-client tensors) arrives
with the task and leaves with the result, and the coordinator commits it only when it
accepts the result. So any runner can train any client and get the same bytes.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import torch

from fedsim.algorithms import build_algorithm
from fedsim.algorithms.base import ClientContext, load_state
from fedsim.codecs.pipeline import decode_tensors
from fedsim.codecs.wire import pack_message, unpack_message
from fedsim.runtime import seeding
from fedsim.runtime.build import load_data, make_model, make_partitions
from fedsim.runtime.protocol import Task, TaskResult, pack_state, unpack_state

CODEC_PREFIX = "codec/"
ALGO_PREFIX = "algo/"


def split_state(state: dict[str, np.ndarray]) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Flat state names -> (codec state per tensor, algorithm state)."""
    codec: dict[str, dict] = {}
    algo: dict[str, np.ndarray] = {}
    for k, v in state.items():
        if k.startswith(CODEC_PREFIX):
            tensor, _, key = k[len(CODEC_PREFIX) :].rpartition("#")
            codec.setdefault(tensor, {})[key] = v
        elif k.startswith(ALGO_PREFIX):
            algo[k[len(ALGO_PREFIX) :]] = v
    return codec, algo


def join_state(codec: dict[str, dict | None], algo: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for tensor, st in codec.items():
        for key, v in (st or {}).items():
            out[f"{CODEC_PREFIX}{tensor}#{key}"] = np.asarray(v)
    for k, v in algo.items():
        out[f"{ALGO_PREFIX}{k}"] = np.asarray(v)
    return out


def readonly_tensor(a: np.ndarray) -> torch.Tensor:
    """A tensor view of a cached, read-only dataset array (never written to)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(np.ascontiguousarray(a))


class ClientRunner:
    def __init__(self, scenario: Any):
        self.scenario = scenario
        torch.set_num_threads(scenario.runtime.torch_threads)
        self.algorithm = build_algorithm(scenario)
        self.dataset = load_data(scenario)
        self.partitions = make_partitions(scenario, self.dataset)
        self.model = make_model(scenario, self.dataset)
        self.algorithm.prepare_model(self.model)
        # full initial state incl. non-communicated buffers: reset before every task so a
        # runner's history never leaks into the next client's training
        self._initial = {k: v.clone() for k, v in self.model.state_dict().items()}
        self._x = readonly_tensor(self.dataset.x_train)
        self._y = readonly_tensor(self.dataset.y_train)

    def run(self, task: Task) -> TaskResult:
        t0 = time.perf_counter()
        msg = unpack_message(task.payload)
        global_state = decode_tensors(msg.tensors)
        config = dict(msg.meta.get("config") or {})
        config.update(task.meta.get("client_config") or {})
        uplink = str(msg.meta.get("uplink", "fp32"))
        codec_state, algo_state = split_state(unpack_state(task.state))

        self.model.load_state_dict(self._initial)
        load_state(self.model, global_state)
        seed = seeding.derive_seed(self.scenario.seed, seeding.TRAIN, task.round, task.client_id)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        idx = torch.from_numpy(self.partitions[task.client_id])
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
        t1 = time.perf_counter()
        update = self.algorithm.local_train(ctx)
        t2 = time.perf_counter()
        rng = seeding.rng_for(self.scenario.seed, seeding.UPLINK, task.round, task.client_id)
        records, new_codec_state, enc_metrics = self.algorithm.encode_update(
            ctx, update, uplink, rng, codec_state
        )
        update.metrics.update(enc_metrics)
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
            {"wall_decode_s": t1 - t0, "wall_train_s": t2 - t1, "wall_encode_s": t3 - t2},
        )
