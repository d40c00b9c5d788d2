"""FedProx (Li et al., MLSys 2020): FedAvg plus the proximal term μ/2·||w − w_global||².

The anchor is a true copy of the global weights taken before local training starts.
"""

from __future__ import annotations

import torch
from pydantic import Field

from fedsim.algorithms.base import ClientContext, Options
from fedsim.algorithms.fedavg import FedAvg


class FedProxOptions(Options):
    mu: float = Field(0.01, ge=0, description="proximal coefficient μ")


class FedProx(FedAvg):
    name = "fedprox"
    summary = "FedProx: FedAvg with a proximal term mu/2*||w - w_global||^2 (Li et al. 2020)"
    Options = FedProxOptions

    def extra_loss(self, ctx: ClientContext, loss: torch.Tensor) -> torch.Tensor:
        if "prox_anchor" not in ctx.cache:  # the global weights, before any local step
            ctx.cache["prox_anchor"] = {
                n: p.detach().clone() for n, p in ctx.model.named_parameters()
            }
        anchor = ctx.cache["prox_anchor"]
        prox = sum(((p - anchor[n]) ** 2).sum() for n, p in ctx.model.named_parameters())
        return loss + 0.5 * self.options.mu * prox

    def extra_loss_batched(
        self,
        loss: torch.Tensor,
        params: dict[str, torch.Tensor],
        anchor: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        prox = sum(((p - anchor[n]) ** 2).flatten(1).sum(1) for n, p in params.items())
        return loss + 0.5 * self.options.mu * prox
