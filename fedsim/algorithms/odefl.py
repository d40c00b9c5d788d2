"""Neural-ODE federated learning with flexible iteration counts (PAPERS.md Sec. 3).

Hoshino, Kawakami, Matsutani, "Neural ODE as a lightweight ResNet" (arXiv 2208.09478):
an ODE-Net (``model.name = "odenet"``) reuses one residual block's weights for C
iterations per stage, so it costs one block per stage on the wire where its ResNet
counterpart costs n. "Flexible FL": each client runs the ODE blocks for its own C (weak
devices fewer iterations); parameter shapes do not depend on C (GroupNorm), so the server
averages the updates directly, exactly as FedAvg.

What this method adds to FedAvg:

* Per-client C (``client_config``): from the device profile's name
  (``iterations_by_profile``), else deterministically from the client id
  (``iterations_mix[client_id % len]``), else the uniform ``iterations`` (default: the C
  the model was built with). The choice depends only on (client id, device, options).
* Compute time follows C (``train_flops_per_sample``): the model is counted with torch's
  FlopCounterMode once per C, at the training batch size, like the coordinator's own count.
* Each shared tensor is sent once: state entries that alias one storage (weight tying, a
  block object repeated in a Sequential) travel under one name both ways; the server
  re-expands them before averaging. An ODE block's reused weights are a single state entry,
  so they cost their bytes once; the update metrics ``ode_distinct_bytes`` and
  ``ode_unrolled_bytes`` (what a model paying per iteration would send) show the saving.
* The global model is evaluated at several C on evaluated rounds: ``acc_c{C}`` and
  ``loss_c{C}`` in metrics.jsonl.

Non-ODE models (the ``resnet`` counterpart, ``cnn``) run as plain FedAvg with the same
accounting, so one scenario can compare both on equal terms.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import torch
from pydantic import Field, field_validator

from fedsim.algorithms.base import (
    ClientContext,
    ClientResult,
    ClientUpdate,
    Encoded,
    Options,
    RoundPlan,
    State,
    Uplink,
    communicated_names,
    load_state,
)
from fedsim.algorithms.fedavg import FedAvg
from fedsim.errors import ScenarioError

BYTES_PER_FLOAT = 4  # the distinct-bytes metric counts tensors as fp32, as they are stored


class ODEFLOptions(Options):
    iterations: int | None = Field(
        None, ge=1, description="uniform iteration count C (default: the model's own)"
    )
    iterations_by_profile: dict[str, int] = Field(
        default_factory=dict,
        description='C per device profile name, e.g. {"phone-4g" = 1, "laptop-wifi" = 4}',
    )
    iterations_mix: list[int] = Field(
        default_factory=list,
        description="C by client id (client_id % len) when the device profile gives none",
    )
    eval_iterations: list[int] = Field(
        default_factory=list,
        description="evaluate the global model at these C (default: every C in use)",
    )

    @field_validator("iterations_by_profile")
    @classmethod
    def _positive_map(cls, v: dict[str, int]) -> dict[str, int]:
        bad = {k: c for k, c in v.items() if c < 1}
        if bad:
            raise ValueError(f"iteration counts must be >= 1, got {bad}")
        return v

    @field_validator("iterations_mix", "eval_iterations")
    @classmethod
    def _positive_list(cls, v: list[int]) -> list[int]:
        if any(c < 1 for c in v):
            raise ValueError(f"iteration counts must be >= 1, got {v}")
        return v


def is_ode(model: torch.nn.Module) -> bool:
    return hasattr(model, "set_iterations") and hasattr(model, "iterations")


def alias_map(model: torch.nn.Module) -> dict[str, str]:
    """Communicated state names that alias an earlier one's storage -> that earlier name.

    Two entries alias when they view the same memory with the same shape and strides (a
    tied weight, a block object used twice). The canonical name is the first in sorted
    order, so the client and the server agree without talking.
    """
    sd = model.state_dict()
    seen: dict[tuple, str] = {}
    aliases: dict[str, str] = {}
    for name in communicated_names(model):
        t = sd[name]
        key = (
            t.untyped_storage().data_ptr(),
            t.storage_offset(),
            tuple(t.shape),
            tuple(t.stride()),
        )
        if key in seen:
            aliases[name] = seen[key]
        else:
            seen[key] = name
    return aliases


def unrolled_counts(model: torch.nn.Module) -> dict[str, int]:
    """Each distinct communicated tensor -> how many times one forward pass applies it:
    the ODE blocks' shared weights count C times, aliases add their canonical tensor's
    count, everything else once."""
    aliases = alias_map(model)
    reuse = model.parameter_reuse() if hasattr(model, "parameter_reuse") else {}
    counts: dict[str, int] = {}
    for name in communicated_names(model):
        canonical = aliases.get(name, name)
        counts[canonical] = counts.get(canonical, 0) + int(reuse.get(name, 1))
    return counts


def client_iterations(options: ODEFLOptions, base: int, client_id: int, device: Any) -> int:
    """The iteration count C of one client: device profile, else client-id mix, else uniform."""
    name = getattr(device, "name", None)
    if name is not None and name in options.iterations_by_profile:
        return int(options.iterations_by_profile[name])
    if options.iterations_mix:
        return int(options.iterations_mix[client_id % len(options.iterations_mix)])
    return int(options.iterations if options.iterations is not None else base)


class ODEFL(FedAvg):
    name = "odefl"
    summary = (
        "Neural-ODE FL: per-device iteration counts, shared tensors sent once (Hoshino et al.)"
    )
    Options = ODEFLOptions

    def __init__(self, scenario: Any, options: ODEFLOptions | None = None):
        super().__init__(scenario, options)
        self._aliases: dict[str, str] = {}
        self._model: torch.nn.Module | None = None  # the server's private copy
        self._initial: dict[str, torch.Tensor] = {}
        self._base = 1
        self._built = 0  # per-iteration BatchNorm copies (0: any C is allowed)
        self._flops: dict[int, float] = {}

    # ---- server side -------------------------------------------------------------------
    def init_global(self, model: torch.nn.Module) -> State:
        self._aliases = alias_map(model)
        self._model = copy.deepcopy(model)
        self._initial = {k: v.clone() for k, v in self._model.state_dict().items()}
        if is_ode(model):
            self._base = int(model.iterations)
            block = model.body[0] if hasattr(model, "body") else None
            if getattr(block, "per_iteration_norm", False):
                self._built = len(block.f.norm1)
                too_many = [c for c in self.iterations_in_use() if c > self._built]
                if too_many:
                    raise ScenarioError(
                        f"iteration count {max(too_many)} exceeds the {self._built} per-iteration "
                        'BatchNorms the model was built with; use norm = "group"',
                        field="algorithm",
                    )
        return super().init_global(model)

    def iterations_in_use(self) -> list[int]:
        """Every C a client or the evaluation may run, sorted."""
        o = self.options
        cs = {o.iterations if o.iterations is not None else self._base}
        if o.iterations_mix:  # the mix replaces the uniform C for clients without a profile
            cs = set(o.iterations_mix)
        cs |= set(o.iterations_by_profile.values())
        return sorted(cs)

    def evaluation_iterations(self) -> list[int]:
        cs = self.options.eval_iterations or sorted({*self.iterations_in_use(), self._base})
        return [c for c in cs if not self._built or c <= self._built]

    def configure_round(self, rnd: int, global_state: State) -> RoundPlan:
        plan = super().configure_round(rnd, global_state)
        payload = {k: v for k, v in plan.payload.items() if k not in self._aliases}
        return dataclasses.replace(plan, payload=payload)

    def client_config(self, rnd: int, client_id: int, device: Any) -> dict[str, Any]:
        if self._model is None or not is_ode(self._model):
            return {}
        return {"iterations": client_iterations(self.options, self._base, client_id, device)}

    def train_flops_per_sample(self, flop_model: Any, config: dict[str, Any]) -> float:
        c = config.get("iterations")
        if c is None or self._model is None or not is_ode(self._model):
            return flop_model.train_flops(1)
        c = int(c)
        if c not in self._flops:
            with self._at_iterations(c) as model:
                self._flops[c] = self.server.train_flops_per_sample(model)
        return self._flops[c]

    def aggregate(self, rnd: int, global_state: State, results: list[ClientResult]) -> State:
        if self._aliases:
            results = [
                dataclasses.replace(
                    r,
                    tensors={
                        **r.tensors,
                        **{a: r.tensors[c] for a, c in self._aliases.items() if c in r.tensors},
                    },
                )
                for r in results
            ]
        return super().aggregate(rnd, global_state, results)

    def after_aggregate(
        self, rnd: int, global_state: State, results: list[ClientResult]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("iterations", "ode_distinct_bytes", "ode_unrolled_bytes"):
            vals = [r.metrics[key] for r in results if key in r.metrics]
            if vals:
                out[f"{key}_mean"] = float(np.mean(vals))
        if results and all("iterations" in r.metrics for r in results):
            out["iterations_by_client"] = {
                str(r.client_id): int(r.metrics["iterations"]) for r in results
            }
        sc = self.scenario
        if self._model is not None and is_ode(self._model):
            if rnd % sc.eval.every == 0 or rnd == sc.rounds:
                out.update(self.evaluate_at(global_state, self.evaluation_iterations()))
        return out

    def evaluate_at(self, global_state: State, iterations: list[int]) -> dict[str, float]:
        """Test accuracy and loss of ``global_state`` run at each C in ``iterations``."""
        out: dict[str, float] = {}
        for c in iterations:
            with self._at_iterations(c) as model:
                model.load_state_dict(self._initial)
                load_state(model, {k: v for k, v in global_state.items() if k in self._initial})
                acc, loss = self.server.evaluate(model)
            out[f"acc_c{c}"], out[f"loss_c{c}"] = acc, loss
        return out

    def _at_iterations(self, c: int):
        return _Iterations(self._model, c)

    # ---- client side -------------------------------------------------------------------
    def local_train(self, ctx: ClientContext) -> ClientUpdate:
        model = ctx.model
        c = ctx.config.get("iterations")
        if c is None or not is_ode(model):
            return super().local_train(ctx)
        with _Iterations(model, int(c)):
            update = super().local_train(ctx)
        update.metrics["iterations"] = float(c)
        return update

    def encode_update(self, ctx: ClientContext, update: ClientUpdate, up: Uplink) -> Encoded:
        aliases = alias_map(ctx.model)
        tensors = {k: v for k, v in update.tensors.items() if k not in aliases}
        c = int(ctx.config.get("iterations", getattr(ctx.model, "iterations", 1)))
        with _Iterations(ctx.model, c):
            counts = unrolled_counts(ctx.model)
        distinct = sum(int(v.size) for v in tensors.values()) * BYTES_PER_FLOAT
        unrolled = sum(int(v.size) * counts.get(k, 1) for k, v in tensors.items())
        enc = super().encode_update(ctx, dataclasses.replace(update, tensors=tensors), up)
        enc.metrics.update(
            ode_distinct_bytes=float(distinct), ode_unrolled_bytes=float(unrolled * BYTES_PER_FLOAT)
        )
        return enc


class _Iterations:
    """Run an ODE model at C inside the block, then restore its own C (no-op for others)."""

    def __init__(self, model: torch.nn.Module, c: int):
        self.model, self.c = model, c
        self.before = int(model.iterations) if is_ode(model) else None

    def __enter__(self) -> torch.nn.Module:
        if self.before is not None:
            self.model.set_iterations(self.c)
        return self.model

    def __exit__(self, *exc: object) -> None:
        if self.before is not None:
            self.model.set_iterations(self.before)
