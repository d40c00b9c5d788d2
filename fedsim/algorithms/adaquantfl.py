"""AdaQuantFL (Jhunjhunwala et al., ICASSP 2021): ascending quantization levels.

A diff of FedDQ's loss-based mode: the QSGD level rises as the global training loss falls,

    s_k = ceil(s_0 · sqrt(F_0 / F_k)),   s_0 = 2,

with F the global model's training loss, as the rule is written (Jhunjhunwala et al.
2021, eq. for s_k): F_k = F(w_k) over the union of the clients' training data, computed by
the server after every aggregation, F_0 = F(w_0) before round 1 (≈ ln 10 for 10 classes).
`loss_source = "clients"` uses instead the mean of the clients' local mini-batch losses of
the previous round (the scalar already in every update's header, counted on the wire;
F_0 = round 1's, round 1 at s_0). The whole update goes through QSGD with s_k levels
(`qsgd:s=<s_k>`, the round plan's uplink, which travels in every task).
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from fedsim.algorithms.base import ClientContext, Options, RoundPlan, State
from fedsim.algorithms.feddq import FedDQ, LossSource


def adaquant_level(s0: float, f0: float | None, fk: float | None, s_max: int = 2**15) -> int:
    """s_k = ceil(s0·sqrt(F_0/F_k)), s0 before any loss is known, capped at s_max."""
    if not f0 or not fk or fk <= 0:
        return min(math.ceil(s0), s_max)
    return int(min(math.ceil(s0 * math.sqrt(f0 / fk)), s_max))


class AdaQuantFLOptions(Options):
    s0: float = Field(2.0, gt=0, description="initial QSGD level s_0")
    s_max: int = Field(2**15, ge=1, le=2**15, description="cap on the level")
    weighted: bool = Field(True, description="sample-weighted mean of updates")
    loss_source: LossSource = Field(
        "global",
        description="F: the global model's training loss, or the clients' mean mini-batch loss",
    )


class AdaQuantFL(FedDQ):
    name = "adaquantfl"
    summary = "AdaQuantFL: QSGD levels ascending as the loss falls (Jhunjhunwala et al. 2021)"
    Options = AdaQuantFLOptions

    def uses_loss(self) -> bool:
        return True

    def configure_round(self, rnd: int, global_state: State) -> RoundPlan:
        self.loss_before_round(global_state)
        s = adaquant_level(self.options.s0, self.f0, self.f_last, self.options.s_max)
        plan = super(FedDQ, self).configure_round(rnd, global_state)
        return RoundPlan(plan.payload, plan.downlink, f"qsgd:s={s}", {**plan.config, "level": s})

    def tensor_spec(self, ctx: ClientContext, name: str, x: np.ndarray, spec: str) -> str:
        return spec
