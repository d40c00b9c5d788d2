"""Quantization-robust FedAvg (Gupta, Fournarakis, Reisser, Louizos, Nagel; TMLR 2023).

FedAvg variants whose global model survives post-training quantization (PTQ) to many
bit-widths, for fleets whose devices run different integer hardware. Communication stays
`[codec]` (fp32 by default); what changes is the client's local objective:

- `kure`:   loss + λ·mean_l (Kurt(W_l) − 1.8)^2 over conv/linear weights (λ = 1): a
            uniform-like weight distribution quantizes well at any bit-width.
- `qat`:    forward with fake-quantized weights (symmetric per-channel min-max) and layer
            inputs (per-tensor min-max of the batch) at fixed b; straight-through gradients.
- `mqat`:   QAT where every local step draws b uniformly from a set B (default {4..8}): one
            forward/backward per step at that b.
- `hetero`: QAT at each device's own bit-width: `profile_bits` maps device profile names
            to bits; clients without a known profile get `bit_choices[client_id % len]`.
- `fedavg_ptq`: plain FedAvg, the baseline of the PTQ table.

All of them (option `ptq = true`, the default) evaluate the final global model under PTQ at
`ptq_configs` (W8A8, W6A6, W4A8, W4A4, W3, W2; fedsim/eval/ptq.py) after the last round and
report `ptq_<config>` accuracies (and `ptq_fp32`) in that round's metrics.jsonl row.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, field_validator

from fedsim.algorithms.base import (
    ClientContext,
    ClientResult,
    ClientUpdate,
    Options,
    ServerContext,
    State,
    load_state,
)
from fedsim.algorithms.fedavg import FedAvg
from fedsim.eval.ptq import DEFAULT_CONFIGS, parse_config, ptq_table
from fedsim.models.quant import fake_quant_minmax, fake_quant_symmetric, kurtosis, quant_layers


class PTQOptions(Options):
    ptq: bool = Field(True, description="PTQ-evaluate the final global model (ptq_* metrics)")
    ptq_configs: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CONFIGS), description="PTQ bit configs"
    )
    ptq_calib_batches: int = Field(4, ge=1, description="training batches to calibrate on")

    @field_validator("ptq_configs")
    @classmethod
    def _configs(cls, v: list[str]) -> list[str]:
        for c in v:
            parse_config(c)
        return v


def run_ptq(
    server: ServerContext, global_state: State, configs, calib_batches: int
) -> dict[str, float]:
    """PTQ table of a global state, on a fresh model built as every client builds it."""
    model = server.new_model()
    load_state(model, {k: v for k, v in global_state.items() if k in model.state_dict()})
    table = ptq_table(model, server.dataset, configs, calib_batches=calib_batches)
    return {f"ptq_{k}": v for k, v in table.items()}


class FedAvgPTQ(FedAvg):
    name = "fedavg_ptq"
    summary = "FedAvg whose final model is evaluated under PTQ (W8A8..W2)"
    Options = PTQOptions
    server_state_fields = ("ptq_result",)
    ptq_result: dict[str, float] | None = None

    def after_aggregate(
        self, rnd: int, global_state: State, results: list[ClientResult]
    ) -> dict[str, Any]:
        out = dict(super().after_aggregate(rnd, global_state, results))
        o = self.options
        if o.ptq and rnd == self.scenario.rounds:
            self.ptq_result = run_ptq(self.server, global_state, o.ptq_configs, o.ptq_calib_batches)
            out.update(self.ptq_result)
        return out

    def summary_extra(self, model: Any, dataset: Any) -> dict[str, Any]:
        table = self.ptq_result
        return {"ptq": {k.removeprefix("ptq_"): v for k, v in table.items()}} if table else {}


class KUREOptions(PTQOptions):
    lam: float = Field(1.0, ge=0, description="weight λ of the kurtosis penalty")
    target: float = Field(1.8, gt=0, description="target kurtosis (1.8 = uniform)")


class KURE(FedAvgPTQ):
    name = "kure"
    summary = "Quantization-robust FedAvg: kurtosis regularization (KURE) of the weights"
    Options = KUREOptions

    def extra_loss(self, ctx: ClientContext, loss: torch.Tensor) -> torch.Tensor:
        layers = quant_layers(ctx.model)
        if not layers or self.options.lam == 0:
            return loss
        pen = sum((kurtosis(m.weight) - self.options.target) ** 2 for _, m in layers)
        return loss + self.options.lam * pen / len(layers)


class QATOptions(PTQOptions):
    bits: int = Field(4, ge=1, le=16, description="weight bits during training")
    act_bits: int | None = Field(
        None, ge=0, le=16, description="input bits (None: same as bits, 0: not quantized)"
    )
    per_channel: bool = Field(True, description="per-output-channel weight scales")


class QAT(FedAvgPTQ):
    name = "qat"
    summary = "Quantization-robust FedAvg: quantization-aware training at a fixed bit-width"
    Options = QATOptions

    def step_bits(self, ctx: ClientContext) -> int:
        """The bit-width of this local step."""
        return int(ctx.config.get("bits", self.options.bits))

    def act_bits_for(self, bits: int) -> int:
        a = self.options.act_bits
        return bits if a is None else int(a)

    def _install_hooks(self, ctx: ClientContext) -> None:
        layers = quant_layers(ctx.model)
        ctx.cache["q_layers"] = layers
        hooks = []
        for _, m in layers[1:]:  # the first layer's input is the data

            def hook(mod, inp, cache=ctx.cache):
                ab = cache.get("q_abits", 0)
                if not ab:
                    return None
                x = inp[0]
                return (fake_quant_minmax(x, float(x.detach().min()), float(x.detach().max()), ab),)

            hooks.append(m.register_forward_pre_hook(hook))
        ctx.cache["q_hooks"] = hooks

    def forward(self, ctx: ClientContext, xb: torch.Tensor) -> torch.Tensor:
        if "q_hooks" not in ctx.cache:
            self._install_hooks(ctx)
        bits = self.step_bits(ctx)
        ctx.cache["q_abits"] = self.act_bits_for(bits)
        params = {
            f"{name}.weight": fake_quant_symmetric(m.weight, bits, self.options.per_channel)
            for name, m in ctx.cache["q_layers"]
        }
        return torch.func.functional_call(ctx.model, params, (xb,), strict=False)

    def local_train(self, ctx: ClientContext) -> ClientUpdate:
        try:
            return super().local_train(ctx)
        finally:
            for h in ctx.cache.pop("q_hooks", []):
                h.remove()


class MQATOptions(QATOptions):
    bit_set: list[int] = Field(
        default_factory=lambda: [4, 5, 6, 7, 8], min_length=1, description="bit-widths B"
    )


class MQAT(QAT):
    name = "mqat"
    summary = "Quantization-robust FedAvg: multi-bit QAT (b drawn from B at every step)"
    Options = MQATOptions

    def step_bits(self, ctx: ClientContext) -> int:
        B = self.options.bit_set
        i = int(torch.randint(len(B), (1,), generator=ctx.generator))
        return int(B[i])


DEFAULT_PROFILE_BITS = {
    "phone-4g": 4,
    "phone-5g": 6,
    "laptop-wifi": 8,
    "iot": 4,
    "raspberry-pi": 4,
    "edge-gpu": 8,
}


class HeteroOptions(QATOptions):
    profile_bits: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_PROFILE_BITS),
        description="device profile name -> hardware bit-width",
    )
    bit_choices: list[int] = Field(
        default_factory=lambda: [4, 6, 8],
        min_length=1,
        description="clients without a known profile: bit_choices[client_id % len]",
    )


class Hetero(QAT):
    name = "hetero"
    summary = "Quantization-robust FedAvg: QAT at each device's own bit-width"
    Options = HeteroOptions

    def client_bits(self, client_id: int, device: Any) -> int:
        if device is not None:
            b = getattr(device, "bits", None)
            if b:
                return int(b)
            name = getattr(device, "name", None) or getattr(device, "profile", None)
            if name in self.options.profile_bits:
                return int(self.options.profile_bits[name])
        ch = self.options.bit_choices
        return int(ch[client_id % len(ch)])

    def client_config(self, rnd: int, client_id: int, device: Any) -> dict[str, Any]:
        return {"bits": self.client_bits(client_id, device)}


__all__ = ["KURE", "MQAT", "QAT", "FedAvgPTQ", "Hetero", "run_ptq"]
