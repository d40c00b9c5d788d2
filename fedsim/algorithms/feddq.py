"""FedDQ (Qu, Song, Tsui; GLOBECOM 2022, arXiv 2110.02291): descending quantization.

The best quantization level follows the range of the update: as training converges the
updates shrink, so fewer bits suffice. Range-based (default, as in the authors' code): for
each tensor l of the client's update Δ = w_local − w_global,

    r_l = max Δ_l − min Δ_l,   b_l = clamp(ceil(log2(r_l / res)), b_min, b_max)

and Δ_l is sent with the uniform b_l-bit quantizer over [min, max] (step r_l/(2^b_l − 1),
codec `q<b_l>`; `rounding = "stochastic"` for unbiased rounding, `q<b>:stochastic`). Every
tensor is included, biases too. A range below the resolution (r_l ≤ res, e.g. an untouched
tensor) gets b_min bits.

Loss-based (`mode = "loss"`, early versions; formula not published, our reading):
s_t = max(s_min, ceil(s_0·(F_t/F_0)^γ)), b = ceil(log2(s_t + 1)) for every tensor. F by
default the mean training loss the clients reported in the previous round (F_0: round 1's;
`loss_source = "clients"`), or the global model's training loss (`loss_source = "global"`,
see `LossTracking`).

The server applies the sample-weighted mean of the decoded updates (`weighted = false`:
the plain mean, as coded). Downlink stays `[codec].downlink` (fp32 in the paper).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import Field

from fedsim.algorithms.base import (
    ClientContext,
    ClientResult,
    Options,
    RoundPlan,
    State,
    load_state,
    weighted_mean,
)
from fedsim.algorithms.qbaselines import FedPAQ


def range_bits(x: np.ndarray, res: float, b_min: int = 1, b_max: int = 16) -> int:
    """FedDQ's bit rule: clamp(ceil(log2((max − min) / res)), b_min, b_max)."""
    if x.size == 0:
        return b_min
    r = float(np.max(x)) - float(np.min(x))
    if not r > res:  # below (or at) the resolution, or constant: the fewest bits
        return b_min if r <= res else b_max  # r is NaN -> b_max (let the codec complain)
    return int(min(max(math.ceil(math.log2(r / res)), b_min), b_max))


def loss_level(s0: float, f0: float, ft: float, gamma: float, s_min: int) -> int:
    """FedDQ loss-based level: max(s_min, ceil(s0·(F_t/F_0)^γ)) (descends as the loss falls)."""
    if not (f0 > 0 and ft >= 0):
        return max(s_min, math.ceil(s0))
    return max(int(s_min), math.ceil(s0 * (ft / f0) ** gamma))


def level_bits(s: int) -> int:
    """Bits for s quantization levels: ceil(log2(s + 1))."""
    return max(1, math.ceil(math.log2(s + 1)))


LossSource = Literal["global", "clients"]


class FedDQOptions(Options):
    mode: Literal["range", "loss"] = Field("range", description="bit rule: update range or loss")
    res: float = Field(0.005, gt=0, description="range mode: quantization resolution")
    b_min: int = Field(1, ge=1, le=16, description="fewest bits per value")
    b_max: int = Field(16, ge=1, le=16, description="most bits per value")
    rounding: Literal["deterministic", "stochastic"] = Field(
        "deterministic", description="deterministic (as coded) or unbiased stochastic rounding"
    )
    s0: float = Field(256.0, gt=0, description="loss mode: initial level s_0")
    gamma: float = Field(1.0, ge=0, description="loss mode: exponent γ")
    s_min: int = Field(1, ge=1, description="loss mode: fewest levels")
    weighted: bool = Field(True, description="sample-weighted mean of updates (false: plain)")
    loss_source: LossSource = Field(
        "clients",
        description="loss mode: F from the clients' mean mini-batch loss or the global model",
    )


class LossTracking:
    """Server side: F_0 and F_k, the training loss a level rule reads (declared server state:
    checkpointed and restored by the runtime).

    `loss_source = "global"`: F(w) of the global model over the union of the clients'
    training data (`ServerContext.train_loss`), computed by the server: F_0 = F(w_0) before
    round 1, then F(w_k) after every aggregation. Nothing extra travels.
    `loss_source = "clients"`: the mean of the clients' local mini-batch losses of the
    previous round (the `train_loss` scalar in every update's header, counted on the wire);
    F_0 is round 1's, and round 1 runs at s_0.
    """

    server_state_fields = ("f0", "f_last")
    f0: float | None = None
    f_last: float | None = None
    _loss_model: Any = None  # the server's scratch model for F(w); not state

    def uses_loss(self) -> bool:
        return True

    def global_loss(self, state: State) -> float:
        if self._loss_model is None:
            self._loss_model = self.server.new_model()
        load_state(self._loss_model, state)
        return float(self.server.train_loss(self._loss_model))

    def loss_before_round(self, global_state: State) -> None:
        """F_0 = F(w_0), measured on the model the first round sends (global source)."""
        if self.f0 is None and self.uses_loss() and self.options.loss_source == "global":
            self.f0 = self.f_last = self.global_loss(global_state)

    def track_loss(self, global_state: State, results: list[ClientResult]) -> None:
        """After an aggregation: F of the new global model, or the clients' mean loss."""
        if not results or not self.uses_loss():
            return
        if self.options.loss_source == "global":
            self.f_last = self.global_loss(global_state)
            return
        f = float(np.mean([r.train_loss for r in results]))
        if self.f0 is None:
            self.f0 = f
        self.f_last = f


class FedDQ(LossTracking, FedPAQ):
    name = "feddq"
    summary = "FedDQ: per-tensor bits from the update range, descending (Qu et al. 2022)"
    Options = FedDQOptions

    def owns_codec(self, direction: str) -> bool:
        return direction == "uplink"  # bits per tensor (range) or per round (loss)

    def uses_loss(self) -> bool:
        return self.options.mode == "loss"

    def configure_round(self, rnd: int, global_state: State) -> RoundPlan:
        plan = super().configure_round(rnd, global_state)
        if self.options.mode != "loss":
            return plan
        o = self.options
        self.loss_before_round(global_state)
        s = loss_level(o.s0, self.f0 or 0.0, self.f_last or 0.0, o.gamma, o.s_min)
        bits = min(max(level_bits(s), o.b_min), o.b_max)
        return RoundPlan(plan.payload, plan.downlink, plan.uplink, {**plan.config, "bits": bits})

    def tensor_spec(self, ctx: ClientContext, name: str, x: np.ndarray, spec: str) -> str:
        o = self.options
        if o.mode == "loss":
            b = int(ctx.config["bits"])
        else:
            b = range_bits(x, o.res, o.b_min, o.b_max)
        return f"q{b}" + (":stochastic" if o.rounding == "stochastic" else "")

    def aggregate(self, rnd: int, global_state: State, results: list[ClientResult]) -> State:
        if not results:
            return global_state
        return self.apply_delta(
            global_state, weighted_mean(results, weighted=self.options.weighted)
        )

    def after_aggregate(
        self, rnd: int, global_state: State, results: list[ClientResult]
    ) -> dict[str, Any]:
        self.track_loss(global_state, results)
        out = super().after_aggregate(rnd, global_state, results)
        if self.uses_loss() and self.f_last is not None:
            out["loss_F"] = self.f_last  # the F the next round's level rule reads
            out["loss_F0"] = self.f0
        return out
