"""SCAFFOLD (Karimireddy et al., ICML 2020, arXiv 1910.06378): local steps corrected by
control variates, Alg. 1 with option II.

The server keeps the model x and the server control variate c (declared server state, not
part of the model); c travels in every task next to x, as the payload tensors
"scaffold.c/<parameter>". Each client keeps its own c_i (per-client state, 0 before its
first round). With K = local_steps(n_i) steps of size η:

    y ← x;  K times  y ← y − η (g_i(y) − c_i + c)                    (Alg. 1, line 10)
    c_i⁺ = c_i − c + (x − y) / (K η)                                  (option II, line 12)
    uplink Δy = y − x and Δc = c_i⁺ − c_i; the client keeps c_i⁺      (lines 13, 14)
    x ← x + η_g · (1/|S|) Σ_S Δy_i,   c ← c + (1/N) Σ_S Δc_i          (lines 16, 17)

with the paper's uniform means (FedAvg here weights by samples; SCAFFOLD's c is the plain
mean of the N = clients.count c_i, so both means stay uniform) and S the accepted clients.

Under plain SGD option II is the mean gradient of the local objective along the path:
(x − y)/(Kη) = ḡ − c_i + c, so c_i⁺ = ḡ. We compute c_i⁺ = ḡ directly (g + λ·y with the
scenario's weight decay λ, as the optimizer sees it): equal to the formula under plain SGD
(tested), and still the client's mean gradient when the scenario's optimizer adds momentum,
where the literal formula would scale c_i⁺ by about 1/(1 − ρ). The correction −c_i + c is
added to the gradient before the scenario's optimizer steps (the paper's is plain SGD).

Bytes: the downlink carries c and the uplink Δc beside the model tensors, through the same
codecs — about twice FedAvg's traffic, as in the paper. With a lossy uplink codec the
server's c is the mean of the c_i only up to the codec's error.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from fedsim.algorithms.base import (
    ClientContext,
    ClientResult,
    ClientUpdate,
    RoundPlan,
    State,
    communicated_names,
    weighted_mean,
)
from fedsim.algorithms.fedavg import FedAvg

C_PREFIX = "scaffold.c/"  # server control variate c, in the payload
DC_PREFIX = "scaffold.dc/"  # Δc_i, in the update


def variate_names(model: torch.nn.Module) -> list[str]:
    """Tensors with a control variate: the trainable, communicated parameters."""
    sent = set(communicated_names(model))
    return sorted(n for n, p in model.named_parameters() if p.requires_grad and n in sent)


def option2_variate(
    c_i: np.ndarray, c: np.ndarray, dy: np.ndarray, steps: int, lr: float
) -> np.ndarray:
    """c_i⁺ = c_i − c + (x − y)/(K η) with Δy = y − x (Alg. 1, option II)."""
    return (c_i - c - dy / (steps * lr)).astype(np.float32)


def server_variate(c: State, mean_dc: State, accepted: int, population: int) -> State:
    """c ← c + (|S|/N) · mean_S Δc (Alg. 1, line 17)."""
    f = accepted / population
    return {k: (c[k] + f * mean_dc[k].astype(np.float64)).astype(np.float32) for k in c}


class Scaffold(FedAvg):
    name = "scaffold"
    summary = "SCAFFOLD: control variates correct client drift (Karimireddy et al. 2020)"
    server_state_fields = ("c",)

    def __init__(self, scenario: Any, options: Any = None):
        super().__init__(scenario, options)
        self.c: dict[str, np.ndarray] | None = None  # server control variate

    def async_refusal(self) -> str | None:
        return (
            "SCAFFOLD's update c <- c + |S|/N * mean(dc) is defined for synchronous rounds; "
            "no staleness-weighted form is published"
        )

    # ---- server ------------------------------------------------------------------------
    def init_global(self, model: torch.nn.Module) -> State:
        state = super().init_global(model)
        self.c = {n: np.zeros_like(state[n]) for n in variate_names(model)}
        return state

    def configure_round(self, rnd: int, global_state: State) -> RoundPlan:
        plan = super().configure_round(rnd, global_state)
        payload = {**plan.payload, **{C_PREFIX + n: v for n, v in (self.c or {}).items()}}
        return replace(plan, payload=payload)

    def aggregate(self, rnd: int, global_state: State, results: list[ClientResult]) -> State:
        if not results:
            return global_state
        mean = weighted_mean(results, weighted=False)  # uniform means (Alg. 1, lines 16-17)
        self.c = server_variate(
            self.c,
            {n: mean[DC_PREFIX + n] for n in self.c},
            len(results),
            int(self.scenario.clients.count),
        )
        return self.apply_delta(global_state, {k: mean[k] for k in global_state})

    def after_aggregate(
        self, rnd: int, global_state: State, results: list[ClientResult]
    ) -> dict[str, Any]:
        sq = sum(float(np.sum(v.astype(np.float64) ** 2)) for v in (self.c or {}).values())
        return {"scaffold_c_norm": sq**0.5}

    # ---- client ------------------------------------------------------------------------
    def local_train(self, ctx: ClientContext) -> ClientUpdate:
        c = {k[len(C_PREFIX) :]: v for k, v in ctx.global_state.items() if k.startswith(C_PREFIX)}
        c_i = {n: ctx.state.get(n, np.zeros_like(v)).reshape(v.shape) for n, v in c.items()}
        params = dict(ctx.model.named_parameters())
        t = self.scenario.train
        ctx.cache["scaffold"] = {
            "params": {n: params[n] for n in c},
            # −c_i + c, on the model's device (runtime.device)
            "correction": {n: torch.from_numpy(c[n] - c_i[n]).to(params[n].device) for n in c},
            "grad_sum": {
                n: torch.zeros(params[n].shape, dtype=torch.float64, device=params[n].device)
                for n in c
            },
            "decay": float(t.weight_decay),
            "steps": 0,
        }
        update = super().local_train(ctx)  # Δy over the model's own entries
        st = ctx.cache["scaffold"]
        steps = st["steps"]
        new_c = {
            n: (st["grad_sum"][n] / steps).cpu().numpy().astype(np.float32) if steps else c_i[n]
            for n in c
        }
        update.tensors.update({DC_PREFIX + n: (new_c[n] - c_i[n]).astype(np.float32) for n in c})
        update.state = new_c
        return update

    def after_backward(self, ctx: ClientContext) -> None:
        """Record g + λy for c_i⁺, then correct the gradient: g − c_i + c."""
        st = ctx.cache["scaffold"]
        with torch.no_grad():
            for n, p in st["params"].items():
                if p.grad is not None:
                    st["grad_sum"][n] += p.grad.double()
                if st["decay"]:
                    st["grad_sum"][n] += st["decay"] * p.double()
                corr = st["correction"][n].view_as(p)
                if p.grad is None:
                    p.grad = corr.clone()
                else:
                    p.grad.add_(corr)
        st["steps"] += 1


__all__ = ["Scaffold", "option2_variate", "server_variate", "variate_names"]
