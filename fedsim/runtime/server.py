"""The server side of the round engine, shared by both schedules.

`Server` owns the global model and everything a schedule does with it: asking the method
for a round plan, building each selected client's task (downlink encoded once, or per
client with downlink error feedback), the compute time a client needs, accepting a result
(decoding it, committing its state), aggregating through the method's own `aggregate`, and
the state that a checkpoint must carry (global model, client stores, the method's declared
server state). A schedule (`schedule/sync.py`, `schedule/fedbuff.py`) decides *when*.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fedsim.algorithms.base import ClientResult, RoundPlan, State, load_state, state_from_model
from fedsim.codecs.error_feedback import ErrorFeedback
from fedsim.codecs.pipeline import decode_tensors, encode_tensors, parse_codec
from fedsim.codecs.wire import pack_message, payload_bytes, unpack_message, wire_bytes
from fedsim.experiment import Experiment
from fedsim.runtime import checkpoint as ckpt
from fedsim.runtime import seeding
from fedsim.runtime.client import DOWN_PREFIX, model_received
from fedsim.runtime.flops import FlopModel
from fedsim.runtime.lazy import LazyTensors
from fedsim.runtime.protocol import Task, TaskResult, pack_state
from fedsim.runtime.state import ClientStateStore


def samples_processed(n: int, batch: int, epochs: int, steps: int | None) -> int:
    """Exactly how many samples local training touches (the last batch of an epoch is short)."""
    if steps is None:
        return epochs * n
    per_epoch = math.ceil(n / batch)
    return sum(min(batch, n - (s % per_epoch) * batch) for s in range(steps))


def downlink_feedback(spec: str) -> bool:
    """Whether a downlink spec asks for error feedback (per-client model references)."""
    return isinstance(parse_codec(spec), ErrorFeedback)


@dataclass
class Dispatch:
    """One client's task of one round, with what the ledger and the network model need."""

    client: int
    task: Task
    config: dict[str, Any]
    plan: RoundPlan
    down_wire: int
    down_payload: int
    compute_s: float
    received: State | None = None  # with downlink EF: the model the client will hold


class Server:
    def __init__(self, scenario: Any, experiment: Experiment, net: Any):
        self.scenario = sc = scenario
        self.experiment = experiment
        self.net = net
        self.algo = experiment.algorithm()  # the server role: never the clients' instance
        self.algo.bind(experiment.server_context(self.algo))
        self.model = experiment.new_model(self.algo)
        self.global_state: State = self.algo.init_global(self.model)
        self.initial_global = {k: v.copy() for k, v in self.global_state.items()}
        self.initial_full = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.n_params = int(sum(p.numel() for p in self.model.parameters()))
        self.flop_model = FlopModel(
            self.model, tuple(experiment.dataset.input_shape), sc.train.batch_size
        )
        rt = sc.runtime
        disk = rt.state_store != "memory"
        budget = int(rt.state_memory) if rt.state_store == "spill" else None
        self.store = ClientStateStore(
            rt.state_dir if disk else None, disk=disk, memory_bytes=budget
        )
        # downlink error feedback: the model each client last received (server-side copy)
        self.down_store = ClientStateStore(None, disk=disk, memory_bytes=budget)
        self.down_feedback = downlink_feedback(sc.codec.downlink)
        self.nonfinite_loss = False

    def close(self) -> None:
        self.store.close()
        self.down_store.close()

    # ---- dispatch ------------------------------------------------------------------------
    def select(
        self, draw: int, t: float, m: int, exclude: set[int] | frozenset = frozenset()
    ) -> list[int]:
        """Up to m clients online at simulated time t (not in `exclude`), drawn with the RNG of
        (seed, SELECT, draw), sorted by id."""
        rng = seeding.rng_for(self.scenario.seed, seeding.SELECT, draw)
        # asks only the devices it draws (network/selection.py): no pass over the population
        return self.net.sample_online(t, m, rng, exclude)

    def plan(self, rnd: int) -> RoundPlan:
        if self.algo.server is not None:
            self.algo.server.round = rnd
        return self.algo.configure_round(rnd, self.global_state)

    def dispatch(self, rnd: int, clients: list[int], first_task_id: int) -> list[Dispatch]:
        """Tasks for `clients` (sorted) in round `rnd`, numbered from `first_task_id`."""
        plan = self.plan(rnd)
        meta = {"round": rnd, "config": plan.config, "uplink": plan.uplink}
        shared = None
        if not self.down_feedback:
            rng = seeding.rng_for(self.scenario.seed, seeding.DOWNLINK, rnd)
            frames = pack_message(
                "model",
                {**meta, "downlink": plan.downlink},
                self.algo.encode_payload(rnd, plan, rng),
            )
            shared = (frames, wire_bytes(frames), payload_bytes(frames))
        out = []
        for i, c in enumerate(clients):
            cfg = self.algo.client_config(rnd, c, self.net.device(c))
            state = dict(self.store.get(c))
            received = None
            if shared is None:
                frames, reference, received = self._downlink_for(rnd, c, plan, meta)
                state.update({DOWN_PREFIX + k: v for k, v in reference.items()})
                down = (frames, wire_bytes(frames), payload_bytes(frames))
            else:
                down = shared
            task = Task(
                first_task_id + i,
                rnd,
                c,
                down[0],
                pack_state(state),
                {"client_config": cfg} if cfg else {},
            )
            out.append(
                Dispatch(
                    c, task, cfg, plan, down[1], down[2], self.compute_s(c, plan, cfg), received
                )
            )
        return out

    def _downlink_for(
        self, rnd: int, c: int, plan: RoundPlan, meta: dict[str, Any]
    ) -> tuple[list, State, State]:
        """Downlink error feedback (docs/codecs.md): send C(w − ŵ_c), where ŵ_c is the model
        client c last received; the client holds ŵ_c + C(w − ŵ_c), and what C dropped stays
        in the next round's difference."""
        reference = self.down_store.get(c) or self.initial_global
        diff = {
            k: (v - reference[k]).astype(np.float32) if k in reference else v.copy()
            for k, v in plan.payload.items()
        }
        inner = parse_codec(plan.downlink).inner
        rng = seeding.rng_for(self.scenario.seed, seeding.DOWNLINK_CLIENT, rnd, c)
        records, _ = encode_tensors(diff, inner, rng, None)
        frames = pack_message(
            "model", {**meta, "downlink": plan.downlink, "reference": True}, records
        )
        # what the client will hold, from the records themselves (the same bytes, no copy)
        received = model_received(decode_tensors(records), {"reference": True}, reference)
        return frames, reference, received

    def delivered(self, d: Dispatch) -> None:
        """Client `d.client` really received its model: it is the new reference."""
        if d.received is not None:
            self.down_store.commit(d.client, pack_state(d.received))

    def compute_s(self, c: int, plan: RoundPlan, cfg: dict[str, Any]) -> float:
        t = self.scenario.train
        n = samples_processed(self.experiment.sizes[c], t.batch_size, t.local_epochs, t.local_steps)
        per_sample = self.algo.train_flops_per_sample(self.flop_model, {**plan.config, **cfg})
        return per_sample * n / self.net.device_flops(c)

    # ---- results -------------------------------------------------------------------------
    def accept(
        self, c: int, res: TaskResult, staleness: int = 0, weight: float = 1.0
    ) -> ClientResult:
        """An accepted result: its client state is committed, its tensors decode lazily."""
        msg = unpack_message(res.update)
        self.store.commit(c, res.state)
        return ClientResult(
            client_id=c,
            tensors=LazyTensors(msg.tensors),
            num_samples=int(msg.meta["num_samples"]),
            train_loss=float(msg.meta["train_loss"]),
            metrics=dict(msg.meta.get("metrics") or {}),
            staleness=staleness,
            weight=weight,
        )

    def aggregate(self, rnd: int, accepted: list[ClientResult]) -> dict[str, Any]:
        """The method's own server rule, then its round metrics."""
        self.nonfinite_loss = any(not math.isfinite(r.train_loss) for r in accepted)
        self.global_state = self.algo.aggregate(rnd, self.global_state, accepted)
        return self.algo.after_aggregate(rnd, self.global_state, accepted)

    def evaluate(self, model: torch.nn.Module, state: State) -> tuple[float, float]:
        model.load_state_dict(self.initial_full)
        load_state(model, state)
        return self.experiment.evaluate(model)

    def final_model(self) -> torch.nn.Module:
        self.model.load_state_dict(self.initial_full)
        load_state(self.model, self.global_state)
        return self.model

    def diverged(self) -> bool:
        """Non-finite global weights, or a non-finite training loss in the last aggregation."""
        if self.nonfinite_loss:
            return True
        return not all(np.isfinite(v).all() for v in self.global_state.values())

    # ---- checkpoint ----------------------------------------------------------------------
    def checkpoint_parts(
        self,
    ) -> tuple[dict[str, Any], Mapping[int, State], dict[str, np.ndarray]]:
        """(declared server state description, client states, extra arrays). The client
        states are a lazy view of the stores, read one client at a time as the checkpoint is
        written; a client's entry holds its committed state and, under downlink error
        feedback, the model it last received (keys prefixed "down/", as in its tasks)."""
        meta, arrays = ckpt.pack_values("algo", self.algo.server_state())
        return meta, _CheckpointClients(self.store, self.down_store), arrays

    def restore(
        self,
        global_state: State,
        algo_meta: dict[str, Any],
        clients: Mapping[int, State],
        arrays: dict[str, np.ndarray],
    ) -> None:
        self.global_state = global_state
        for c in clients:  # one client at a time (a lazy view of the checkpoint's file)
            st = clients[c]
            own = {k: v for k, v in st.items() if not k.startswith(DOWN_PREFIX)}
            ref = {k[len(DOWN_PREFIX) :]: v for k, v in st.items() if k.startswith(DOWN_PREFIX)}
            self.store.restore(c, own)
            self.down_store.restore(c, ref)
        self.algo.load_server_state(ckpt.unpack_values("algo", algo_meta, arrays))


class _CheckpointClients(Mapping):
    """Client id -> committed state + downlink reference, read from the stores on access."""

    def __init__(self, store: ClientStateStore, down: ClientStateStore):
        self._store, self._down = store, down
        self._ids = sorted(set(store.clients()) | set(down.clients()))

    def __getitem__(self, c: int) -> State:
        st = dict(self._store.get(c))
        st.update({DOWN_PREFIX + k: v for k, v in self._down.get(c).items()})
        return st

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


__all__ = ["Dispatch", "Server", "samples_processed", "state_from_model"]
