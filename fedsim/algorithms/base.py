"""The hooks every FL method implements (Flower-style: one class per method, one file each).

Server side: `init_global`, `configure_round`, `aggregate`, `after_aggregate`.
Client side: `local_train` with the smaller hooks `extra_loss` and `after_backward`, so a
method like FedProx overrides one function and reads as a diff of FedAvg.

Tensors crossing the hooks are numpy float32 arrays keyed by state_dict name; torch lives
only inside local training.

The server role and the client role are separate instances in every executor (in process
too): the server instance is bound to a `ServerContext` (evaluator, FLOPs, seeded RNGs,
fresh models) and keeps the state it declares in `server_state_fields`, which the runtime
checkpoints and restores; the client instance sees only a `ClientContext` per task, and
its per-client state travels in `ctx.state` / `ClientUpdate.state`, kept by the runtime's
client state store. No algorithm saves or restores anything by hand, and nothing here
imports `fedsim.runtime`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from fedsim.codecs.pipeline import encode_tensors, parse_codec

State = dict[str, np.ndarray]


class Options(BaseModel):
    """An algorithm's own settings (the keys of `[algorithm]` besides `name`)."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class RoundPlan:
    """What the server sends in one round: one payload for every selected client."""

    payload: State
    downlink: str
    uplink: str
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class ServerContext:
    """What a server-side hook may use, built by the runtime from the experiment.

    new_model: a freshly built model as every client builds it (`prepare_model` applied).
    evaluate: test accuracy and loss of a model (the run's evaluator).
    train_flops_per_sample: training FLOPs per sample of a model (forward + backward).
    rng: rng(round, client=0), a generator seeded by (scenario seed, round, client), for a
        method's server-side draws.
    train_loss: F(w), the mean cross-entropy of a model over the union of the clients'
        training data (the federated objective; e.g. AdaQuantFL's level rule).
    """

    scenario: Any
    dataset: Any
    new_model: Callable[[], torch.nn.Module]
    evaluate: Callable[[torch.nn.Module], tuple[float, float]]
    train_flops_per_sample: Callable[[torch.nn.Module], float]
    rng: Callable[..., np.random.Generator]
    train_loss: Callable[[torch.nn.Module], float] | None = None
    round: int = 0


@dataclass
class ClientContext:
    """Everything a client's local training sees. Built by the runtime, never by hand."""

    round: int
    client_id: int
    model: torch.nn.Module
    x: torch.Tensor
    y: torch.Tensor
    config: dict[str, Any]
    global_state: State
    seed: int
    generator: torch.Generator
    state: dict[str, np.ndarray]  # the algorithm's own per-client state (persisted)
    scenario: Any
    cache: dict[str, Any] = field(default_factory=dict)  # per-task scratch space for hooks


@dataclass
class ClientUpdate:
    tensors: State
    num_samples: int
    train_loss: float
    metrics: dict[str, float] = field(default_factory=dict)
    state: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Uplink:
    """How a client encodes its update: the round's uplink spec, the RNG seeded by (seed,
    UPLINK, round, client), and the client's codec state (error-feedback residuals by
    tensor name, from the runtime's client store)."""

    spec: str
    rng: np.random.Generator
    state: dict


@dataclass
class Encoded:
    """An encoded update: wire records, the new codec state, metrics (e.g. paper bits)."""

    records: list
    state: dict
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ClientResult:
    """One accepted client's decoded update as the server sees it."""

    client_id: int
    tensors: State
    num_samples: int
    train_loss: float
    metrics: dict[str, Any]
    staleness: int = 0
    weight: float = 1.0  # the schedule's weight of this update (FedBuff: s(staleness))


def communicated_names(model: torch.nn.Module) -> list[str]:
    """State entries that travel: floating-point ones (integer counters stay local)."""
    return sorted(k for k, v in model.state_dict().items() if v.is_floating_point())


def state_from_model(model: torch.nn.Module) -> State:
    sd = model.state_dict()
    return {
        k: sd[k].detach().cpu().numpy().astype(np.float32, copy=True)
        for k in communicated_names(model)
    }


def load_state(model: torch.nn.Module, state: State) -> None:
    """Copy the model's entries of `state` into it; other entries (server tensors a method's
    payload carries beside the weights, e.g. SCAFFOLD's control variate) are left out."""
    sd = model.state_dict()
    with torch.no_grad():
        for k, v in state.items():
            if k in sd:
                sd[k].copy_(torch.from_numpy(np.ascontiguousarray(v)).view_as(sd[k]))


_MEAN_CHUNK = 32768  # values per chunk of weighted_mean's float64 accumulation


def weighted_mean(results: list[ClientResult], *, weighted: bool = True) -> State:
    """Sample-weighted mean of the clients' tensors, in client-id order, accumulated in float64.

    Each term is also scaled by the result's schedule weight (1 in synchronous rounds; the
    staleness factor s(τ) under FedBuff) while the normaliser stays Σ n_i, so a stale update
    counts less instead of being renormalised back up (FedBuff, Nguyen et al. 2022, Alg. 1).
    """
    results = sorted(results, key=lambda r: (r.client_id, r.staleness))
    total = sum(r.num_samples for r in results) if weighted else len(results)
    out: State = {}
    term = np.empty(_MEAN_CHUNK, np.float64)  # w·x of one chunk, reused (stays in cache)
    for name in results[0].tensors:
        acc = None  # one tensor of every client at a time (updates may decode lazily)
        for r in results:
            w = r.weight * (r.num_samples if weighted else 1) / total
            # w·x in float64 (x is cast exactly, then multiplied: the same bits as
            # w * x.astype(float64)), added chunk by chunk instead of via full temporaries
            x = np.asarray(r.tensors[name])
            if acc is None:
                acc = np.empty(x.shape, np.float64)
                np.multiply(x, w, out=acc, dtype=np.float64)
                flat = acc.reshape(-1)  # a view: acc is contiguous
                continue
            xf = x.reshape(-1)
            for i in range(0, flat.size, _MEAN_CHUNK):
                j = min(i + _MEAN_CHUNK, flat.size)
                t = term[: j - i]
                np.multiply(xf[i:j], w, out=t, dtype=np.float64)
                flat[i:j] += t
        out[name] = acc.astype(np.float32)
    return out


class Algorithm:
    """FedAvg-shaped defaults: send the global model, train locally, send the update Δ = w − w_g."""

    name: ClassVar[str] = "base"
    summary: ClassVar[str] = ""
    Options: ClassVar[type[Options]] = Options
    # attributes of the server instance that carry over between rounds; the runtime
    # checkpoints and restores them (None, bool, int, float, str, numpy arrays, or dicts of
    # those)
    server_state_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, scenario: Any, options: Options | None = None):
        self.scenario = scenario
        self.options = options if options is not None else self.Options()
        self.server: ServerContext | None = None

    def bind(self, ctx: ServerContext) -> None:
        """Make this instance the server role (called once by the runtime, before init_global)."""
        self.server = ctx

    # ---- what the runtime must know before it runs ------------------------------------
    def async_refusal(self) -> str | None:
        """Why this method (with these options) cannot run under FedBuff's asynchronous
        schedule, or None. The async schedule passes staleness weights through
        `ClientResult.weight`; a server rule that ignores them, or updates that are not
        differences, must refuse."""
        return None

    def owns_codec(self, direction: str) -> bool:
        """True when the method picks the codec of `direction` ("uplink" | "downlink") itself,
        so a scenario's `[codec]` choice for it would be silently ignored: the runtime then
        refuses anything but the default "fp32" there."""
        return False

    def batching_refusal(self) -> str | None:
        """Why this method cannot train several clients as one vectorised computation
        (`runtime.batch_clients` > 1, fedsim/runtime/batched.py), or None. Batched training
        is the default `local_train` with SGD; a method that trains its own way, or adds a
        loss term without a batched form (`extra_loss_batched`), must refuse."""
        if self.scenario.train.optimizer != "sgd":
            return f"batched clients use SGD, not {self.scenario.train.optimizer}"
        own = [
            hook
            for hook in ("local_train", "forward", "after_backward", "make_optimizer")
            if getattr(type(self), hook) is not getattr(Algorithm, hook)
        ]
        if own:
            return f"its client training is its own ({', '.join(own)})"
        cls = type(self)
        if cls.extra_loss is not Algorithm.extra_loss and (
            cls.extra_loss_batched is Algorithm.extra_loss_batched
        ):
            return "its extra_loss has no batched form (extra_loss_batched)"
        return None

    def custom_downlink(self) -> bool:
        """True when the method encodes its downlink payload itself (`encode_payload`
        overridden): the runtime's per-client downlink error feedback cannot apply."""
        return type(self).encode_payload is not Algorithm.encode_payload

    # ---- server side -------------------------------------------------------------------
    def init_global(self, model: torch.nn.Module) -> State:
        return state_from_model(model)

    def configure_round(self, rnd: int, global_state: State) -> RoundPlan:
        return RoundPlan(
            payload=global_state,
            downlink=self.scenario.codec.downlink,
            uplink=self.scenario.codec.uplink,
            config={"lr": self.scenario.train.lr},
        )

    def aggregate(self, rnd: int, global_state: State, results: list[ClientResult]) -> State:
        if not results:
            return global_state
        return self.apply_delta(global_state, weighted_mean(results))

    def apply_delta(self, global_state: State, delta: State) -> State:
        """w ← w + η_g·Δ with the scenario's server step size (1 unless set)."""
        lr = float(self.scenario.server.server_lr)
        if lr == 1.0:
            return {
                k: (global_state[k] + delta[k]).astype(np.float32, copy=False) for k in global_state
            }
        return {
            k: (global_state[k] + lr * delta[k]).astype(np.float32, copy=False)
            for k in global_state
        }

    def after_aggregate(
        self, rnd: int, global_state: State, results: list[ClientResult]
    ) -> dict[str, Any]:
        """Round-level metrics a method wants in metrics.jsonl (e.g. bits per round)."""
        return {}

    def prepare_model(self, model: torch.nn.Module) -> None:
        """Called once on every freshly built model, in every process, before any state is
        loaded (e.g. OQFL swaps in layers with learned quantizer steps)."""

    def server_state(self) -> dict[str, Any]:
        """The declared server state (`server_state_fields`), for checkpoints."""
        return {name: getattr(self, name) for name in self.server_state_fields}

    def load_server_state(self, values: dict[str, Any]) -> None:
        for name in self.server_state_fields:
            if name in values:
                setattr(self, name, values[name])

    def summary_extra(self, model: torch.nn.Module, dataset: Any) -> dict[str, Any]:
        """Extra summary.json fields computed on the final global model (e.g. PTQ tables)."""
        return {}

    def client_config(self, rnd: int, client_id: int, device: Any) -> dict[str, Any]:
        """Per-client settings for this round (e.g. an ODE iteration count from the device
        profile). Merged into the client's config; travels in the task envelope."""
        return {}

    def train_flops_per_sample(self, flop_model: Any, config: dict[str, Any]) -> float:
        """Training FLOPs per sample for a client with this config (forward + backward)."""
        return flop_model.train_flops(1)

    # ---- client side -------------------------------------------------------------------
    def make_optimizer(self, ctx: ClientContext) -> torch.optim.Optimizer:
        t = self.scenario.train
        lr = float(ctx.config.get("lr", t.lr))
        params = [p for p in ctx.model.parameters() if p.requires_grad]
        if t.optimizer == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=t.weight_decay)
        return torch.optim.SGD(params, lr=lr, momentum=t.momentum, weight_decay=t.weight_decay)

    def extra_loss(self, ctx: ClientContext, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def extra_loss_batched(
        self,
        loss: torch.Tensor,
        params: dict[str, torch.Tensor],
        anchor: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """`extra_loss` for clients trained together: `loss` holds each client's loss [N],
        `params` and `anchor` (the received weights) each client's parameters stacked along
        dimension 0. Returns the per-client totals [N]."""
        return loss

    def after_backward(self, ctx: ClientContext) -> None:
        pass

    def encode_payload(self, rnd: int, plan: RoundPlan, rng: np.random.Generator) -> list:
        """Encode the downlink payload (once per round). Methods whose tensors need
        different codecs (e.g. exact per-tensor sparse counts) override this."""
        records, _ = encode_tensors(plan.payload, parse_codec(plan.downlink), rng, None)
        return records

    def encode_update(self, ctx: ClientContext, update: ClientUpdate, up: Uplink) -> Encoded:
        """Encode the update for the uplink. Methods that pick codecs per tensor override
        this (and still encode through `encode_tensors`)."""
        records, new_state = encode_tensors(
            update.tensors, parse_codec(up.spec), up.rng, up.state or None
        )
        return Encoded(records, new_state or {})

    def forward(self, ctx: ClientContext, xb: torch.Tensor) -> torch.Tensor:
        return ctx.model(xb)

    def local_steps(self, n_samples: int) -> int:
        t = self.scenario.train
        if t.local_steps is not None:
            return t.local_steps
        return t.local_epochs * math.ceil(n_samples / t.batch_size)

    def local_train(self, ctx: ClientContext) -> ClientUpdate:
        model, t = ctx.model, self.scenario.train
        model.train()
        opt = self.make_optimizer(ctx)
        n = len(ctx.y)
        steps = self.local_steps(n)
        per_epoch = math.ceil(n / t.batch_size)
        losses = []
        perm = None
        for step in range(steps):
            if step % per_epoch == 0:
                perm = torch.randperm(n, generator=ctx.generator)
            idx = perm[(step % per_epoch) * t.batch_size : (step % per_epoch + 1) * t.batch_size]
            xb, yb = ctx.x[idx], ctx.y[idx]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(self.forward(ctx, xb), yb)
            losses.append(float(loss.detach()))
            total = self.extra_loss(ctx, loss)
            total.backward()
            self.after_backward(ctx)
            opt.step()
        local = state_from_model(model)
        delta = {
            k: (local[k] - ctx.global_state[k]).astype(np.float32, copy=False)
            for k in ctx.global_state
            if k in local  # the model's own entries (a payload may carry more)
        }
        return ClientUpdate(
            tensors=delta, num_samples=n, train_loss=float(np.mean(losses)) if losses else 0.0
        )
