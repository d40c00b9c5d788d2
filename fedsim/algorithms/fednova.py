"""FedNova (Wang et al., NeurIPS 2020, arXiv 2007.07481): normalized averaging.

Clients that take more local steps move further; FedAvg's plain mean then optimizes an
objective tilted towards them. FedNova divides each client's update by its own step count
before averaging and rescales the mean by an effective count (the paper's FedNova rule
x ← x − τ_eff Σ p_i η d_i, d_i = G_i a_i / ||a_i||_1; a_i per local solver from its examples):

    client i, τ_i = local_steps(n_i) steps:  sends Δ_i / a_i,  Δ_i = y_i − x
    a_i = τ_i                                         plain SGD
    a_i = [τ_i − ρ(1 − ρ^τ_i)/(1 − ρ)] / (1 − ρ)     SGD with momentum ρ
    server:  x ← x + η_g · τ_eff · Σ_i p_i Δ_i / a_i,   p_i = n_i / Σ_S n,  τ_eff = Σ_i p_i a_i

(The update sent, Δ_i/a_i = −η d_i, carries η, as in the authors' code, JYWa/FedNova
distoptim/FedNova.py: `local_normalizing_vec` is a_i and `average` takes τ_eff = Σ p_i a_i,
which is Σ p_i τ_i under plain SGD.) When every a_i is equal this is exactly FedAvg.
Weight decay is part of the gradient (the authors' code) and leaves a_i unchanged. τ_i
differ when partition sizes do (local_epochs · ⌈n_i/B⌉); with `train.local_steps` set,
every τ_i is equal and FedNova is FedAvg. Adam has no a_i: refused at start.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedsim.algorithms.base import ClientContext, ClientResult, ClientUpdate, State, weighted_mean
from fedsim.algorithms.fedavg import FedAvg
from fedsim.errors import ScenarioError


def normalizer(steps: int, momentum: float = 0.0) -> float:
    """a_i = ||a_i||_1: τ for plain SGD, [τ − ρ(1 − ρ^τ)/(1 − ρ)]/(1 − ρ) with momentum ρ
    (Σ_t of the momentum counter c_t = ρ c_{t−1} + 1 over the τ steps)."""
    if momentum == 0.0:
        return float(steps)
    r = momentum
    return (steps - r * (1.0 - r**steps) / (1.0 - r)) / (1.0 - r)


def effective_steps(results: list[ClientResult]) -> float:
    """τ_eff = Σ_i p_i a_i with p_i = n_i / Σ n."""
    total = sum(r.num_samples for r in results)
    return sum(r.num_samples / total * float(r.metrics["fednova_a"]) for r in results)


class FedNova(FedAvg):
    name = "fednova"
    summary = "FedNova: updates normalized by local steps, then averaged (Wang et al. 2020)"

    def async_refusal(self) -> str | None:
        return (
            "FedNova's tau_eff = sum p_i a_i normalizes over one synchronous round's clients; "
            "no staleness-weighted form is published"
        )

    def momentum(self) -> float:
        t = self.scenario.train
        if t.optimizer != "sgd":
            raise ScenarioError(
                f"FedNova's normalizer a_i is defined for SGD (with momentum), not {t.optimizer!r}",
                field="train.optimizer",
            )
        return float(t.momentum)

    # ---- server ------------------------------------------------------------------------
    def init_global(self, model: Any) -> State:
        self.momentum()  # refuse an optimizer without a normalizer before any round
        return super().init_global(model)

    def aggregate(self, rnd: int, global_state: State, results: list[ClientResult]) -> State:
        if not results:
            return global_state
        tau_eff = effective_steps(results)
        mean = weighted_mean(results)  # Σ p_i Δ_i / a_i
        return self.apply_delta(
            global_state, {k: (tau_eff * mean[k].astype(np.float64)) for k in global_state}
        )

    def after_aggregate(
        self, rnd: int, global_state: State, results: list[ClientResult]
    ) -> dict[str, Any]:
        if not results:
            return {}
        steps = [int(r.metrics["fednova_steps"]) for r in results]
        return {
            "fednova_tau_eff": effective_steps(results),
            "fednova_steps_min": min(steps),
            "fednova_steps_max": max(steps),
        }

    # ---- client ------------------------------------------------------------------------
    def local_train(self, ctx: ClientContext) -> ClientUpdate:
        update = super().local_train(ctx)
        steps = self.local_steps(update.num_samples)
        a = normalizer(steps, self.momentum())
        scale = 1.0 / a if a > 0 else 0.0
        update.tensors = {k: (v * scale).astype(np.float32) for k, v in update.tensors.items()}
        update.metrics.update({"fednova_steps": float(steps), "fednova_a": a})
        return update


__all__ = ["FedNova", "effective_steps", "normalizer"]
