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
s_t = max(s_min, ceil(s_0·(F_t/F_0)^γ)), b = ceil(log2(s_t + 1)) for every tensor, F the
mean training loss the clients reported in the previous round (F_0: round 1's).

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


class LossTracking:
    """Server side: the clients' mean training loss of round 1 (F_0) and of the last round
    (declared server state: checkpointed and restored by the runtime)."""

    server_state_fields = ("f0", "f_last")
    f0: float | None = None
    f_last: float | None = None

    def track_loss(self, results: list[ClientResult]) -> None:
        if results:
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

    def configure_round(self, rnd: int, global_state: State) -> RoundPlan:
        plan = super().configure_round(rnd, global_state)
        if self.options.mode != "loss":
            return plan
        o = self.options
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
        self.track_loss(results)
        return super().after_aggregate(rnd, global_state, results)
