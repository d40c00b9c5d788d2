"""OQFL (Kim & Hong, APNOMS 2020): quantizers learned by the task loss, inside FL.

Every conv/linear layer gets a learnable weight step s (LSQ, Esser et al. 2020; see
fedsim/models/quant.py): the forward pass uses Ŵ = s·clip(round(W/s), −Q_N, Q_P), the
backward pass the straight-through estimator for W and LSQ's gradient for s. Inputs of every
layer but the first are quantized too, with their own learnable step (`act_bits`, 0 = off).
First and last layer at `first_last_bits` (8; 0 = same `bits` everywhere). Clients train W
and the steps with cross-entropy; the server averages both (sample-weighted).

The model is converted in place (`lsq_convert`): weight/bias names are unchanged and each
layer adds `<layer>.w_step` and `<layer>.a_step`, so the steps travel as ordinary 1-element
tensors of the payload. The server converts its model in `init_global` and the client in
`local_train`; the coordinator evaluates the quantized model.

Wire modes:
- `latent` (the paper): fp32 W and steps both ways; the uplink carries Δ like FedAvg
  (same bytes as FedAvg plus the steps).
- `int`: each quantized weight travels as its b-bit integer codes plus its fp32 step (a
  `q<b>` record with lo = −Q_N·s and step s, decoded by the standard codec), both ways;
  biases and steps fp32. Clients train from the grid model they receive and send their
  local model's codes, rounded stochastically by default (unbiased: a client's progress of
  less than half a step reaches the server in expectation; `rounding = "nearest"` drops
  it — docs/results/quantization.md measures both).
  The server keeps fp32 latent weights (`latent`, declared server state, so checkpoints
  carry it): latent ← latent + mean_k(ŵ_k − w_sent) and the next global model is the
  latent projected onto the averaged step's grid. Projecting the average itself every
  round (`server_latent = false`, the first build) erases every change smaller than half a
  step: a weight whose clients mostly keep it on its grid point never moves, however many
  rounds push it the same way.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from fedsim.algorithms.base import (
    ClientContext,
    ClientResult,
    ClientUpdate,
    Encoded,
    Options,
    RoundPlan,
    State,
    Uplink,
    state_from_model,
    weighted_mean,
)
from fedsim.algorithms.fedavg import FedAvg
from fedsim.codecs.bitpack import code_dtype, pack_codes
from fedsim.codecs.floats import Float32Codec
from fedsim.codecs.pipeline import encode_tensors
from fedsim.codecs.wire import TensorRecord
from fedsim.models.quant import lsq_bits, lsq_convert, signed_range


class OQFLOptions(Options):
    bits: int = Field(4, ge=2, le=16, description="weight (and activation) bits")
    first_last_bits: int = Field(8, ge=0, le=16, description="first/last layer bits (0: = bits)")
    act_bits: int | None = Field(
        None, ge=0, le=16, description="bits of layer inputs (None: = bits, 0: not quantized)"
    )
    wire: Literal["latent", "int"] = Field("latent", description="latent fp32 W or int codes")
    server_latent: bool = Field(
        True, description="int wire: the server accumulates updates in fp32 latent weights"
    )
    rounding: Literal["nearest", "stochastic"] = Field(
        "stochastic", description="int wire: how a client rounds its weights to codes"
    )
    weighted: bool = Field(True, description="sample-weighted averaging")


def int_record(
    name: str, w: np.ndarray, step: float, bits: int, rng: np.random.Generator | None = None
) -> TensorRecord:
    """w's LSQ codes as a standard `q<bits>` record: lo = −Q_N·s, step s, codes k + Q_N.

    Round to nearest, or with `rng` stochastically: ⌊w/s + u⌋, u ~ U[0, 1), so that
    E[code]·s = w inside the range (unbiased rounding, as QSGD, Alistarh et al. 2017)."""
    qn, qp = signed_range(bits)
    s = np.float32(step) if step > 0 else np.float32(1e-12)
    x = w.astype(np.float32).reshape(-1) / s
    r = np.rint(x) if rng is None else np.floor(x + rng.random(x.shape, dtype=np.float32))
    k = np.clip(r, -qn, qp) + qn
    packed = pack_codes(k.astype(code_dtype(bits)), bits)
    scales = np.array([-qn * s, s], np.float32)
    return TensorRecord(name, f"q{bits}", tuple(w.shape), {}, (packed, scales))


def positive_step(v: np.ndarray) -> np.ndarray:
    """A step size's magnitude, kept away from zero (a learned step may cross zero)."""
    return np.maximum(np.abs(v), np.float32(1e-8)).astype(np.float32)


def project(w: np.ndarray, step: float, bits: int) -> np.ndarray:
    """w on its LSQ grid: s·clip(round(w/s), −Q_N, Q_P)."""
    qn, qp = signed_range(bits)
    if not step > 0:
        return w
    return (np.clip(np.rint(w / step), -qn, qp) * step).astype(np.float32)


class OQFL(FedAvg):
    name = "oqfl"
    summary = "OQFL: LSQ learned-step quantization trained with the task loss (Kim & Hong 2020)"
    Options = OQFLOptions
    # int wire: the server's fp32 latent weights {"<layer>.weight": array} (None otherwise)
    server_state_fields = ("latent",)
    latent: dict[str, np.ndarray] | None = None

    def owns_codec(self, direction: str) -> bool:
        return self.options.wire == "int"  # the learned grid's integer codes both ways

    def custom_downlink(self) -> bool:
        return self.options.wire == "int"  # latent mode sends the payload like FedAvg

    def async_refusal(self) -> str | None:
        if self.options.wire == "int":
            return (
                "wire = int sends local weights on a grid, and the server's latent adds each "
                "one's difference from the model of the current round"
            )
        return None

    def convert(self, model: torch.nn.Module) -> dict[str, int]:
        o = self.options
        act = o.bits if o.act_bits is None else o.act_bits
        return lsq_convert(model, o.bits, first_last_bits=o.first_last_bits or None, act_bits=act)

    def layer_bits(self, model: torch.nn.Module | None = None) -> dict[str, int]:
        return self._bits if model is None else lsq_bits(model)

    def prepare_model(self, model: torch.nn.Module) -> None:
        """Every process converts its model before loading state (workers included)."""
        self._bits = self.convert(model)

    def on_grid(self, state: State) -> State:
        """state with every quantized weight projected onto its layer's grid (its w_step)."""
        out = dict(state)
        for layer, b in self._bits.items():
            k = f"{layer}.weight"
            out[k] = project(state[k], float(state[f"{layer}.w_step"][0]), b)
        return out

    # ---- server ------------------------------------------------------------------------
    def init_global(self, model: torch.nn.Module) -> State:
        self._bits = self.convert(model)
        state = state_from_model(model)
        if self.options.wire != "int":
            return state
        # the global model is what devices hold (on the grid); the latent starts at the init
        self.latent = {f"{layer}.weight": state[f"{layer}.weight"].copy() for layer in self._bits}
        return self.on_grid(state)

    def configure_round(self, rnd: int, global_state: State) -> RoundPlan:
        plan = super().configure_round(rnd, global_state)
        if self.options.wire != "int":
            return plan
        bits = ",".join(str(b) for b in sorted(set(self._bits.values())))
        return RoundPlan(plan.payload, f"int({bits})+fp32", plan.uplink, plan.config)

    def encode_payload(self, rnd: int, plan: RoundPlan, rng: np.random.Generator) -> list:
        if self.options.wire != "int":
            return super().encode_payload(rnd, plan, rng)
        records, _ = encode_tensors(plan.payload, self._codec_for(plan.payload, self._bits), rng)
        return records

    def aggregate(self, rnd: int, global_state: State, results: list[ClientResult]) -> State:
        if not results:
            return global_state
        mean = weighted_mean(results, weighted=self.options.weighted)
        if self.options.wire == "latent":
            out = {k: (global_state[k] + mean[k]).astype(np.float32) for k in global_state}
            out.update({k: positive_step(v) for k, v in out.items() if k.endswith("_step")})
            return out
        out = {k: mean[k].astype(np.float32) for k in global_state}
        out.update({k: positive_step(v) for k, v in out.items() if k.endswith("_step")})
        if self.options.server_latent:
            # latent ← latent + mean_k(ŵ_k − w_sent): w_sent = global_state, the grid model
            # every client received this round
            self.latent = {
                k: (v + (mean[k] - global_state[k])).astype(np.float32)
                for k, v in self.latent.items()
            }
            out.update(self.latent)
        return self.on_grid(out)

    def after_aggregate(
        self, rnd: int, global_state: State, results: list[ClientResult]
    ) -> dict[str, Any]:
        """Paper-style bits up (sum over clients) and down (one model) in the wire mode."""
        n_up = len(results)
        per_model = 0.0
        for k, v in global_state.items():
            layer = k[: -len(".weight")] if k.endswith(".weight") else None
            if self.options.wire == "int" and layer in self._bits:
                per_model += self._bits[layer] * v.size  # its step: the w_step tensor
            else:
                per_model += 32.0 * v.size
        return {"paper_bits_up": per_model * n_up, "paper_bits_down_model": per_model}

    # ---- client ------------------------------------------------------------------------
    def local_train(self, ctx: ClientContext) -> ClientUpdate:
        self.convert(ctx.model)  # no-op when the model is already converted (in process)
        update = super().local_train(ctx)
        if self.options.wire == "int":  # send the local model itself, not Δ
            update.tensors = {
                k: (v + ctx.global_state[k]).astype(np.float32) for k, v in update.tensors.items()
            }
            # SGD can push a learned step through zero; s and −s quantize alike locally, but
            # the codes and the server's average need the magnitude
            for k, v in update.tensors.items():
                if k.endswith("_step"):
                    update.tensors[k] = positive_step(v)
        return update

    def _codec_for(self, t: State, bits: dict[str, int], stochastic: bool = False) -> Any:
        """Per tensor: a quantized layer's weight as codes on its grid, the rest fp32."""

        def codec_for(name: str, x: np.ndarray) -> Any:
            layer = name[: -len(".weight")] if name.endswith(".weight") else None
            if layer in bits:  # the integer codes of the learned grid (its step: w_step)
                return _Grid(float(t[f"{layer}.w_step"][0]), bits[layer], stochastic)
            return Float32Codec()

        return codec_for

    def encode_update(self, ctx: ClientContext, update: ClientUpdate, up: Uplink) -> Encoded:
        if self.options.wire == "latent":
            return super().encode_update(ctx, update, up)
        bits = lsq_bits(ctx.model)
        t = update.tensors
        stochastic = self.options.rounding == "stochastic"
        records, _ = encode_tensors(t, self._codec_for(t, bits, stochastic), up.rng, None)
        paper = sum(
            (
                bits[k[: -len(".weight")]]
                if k.endswith(".weight") and k[: -len(".weight")] in bits
                else 32.0
            )
            * x.size
            for k, x in t.items()
        )
        return Encoded(records, {}, {"paper_bits": paper})


class _Grid:
    """Encodes one tensor as its codes on a learned b-bit grid (`int_record`)."""

    def __init__(self, step: float, bits: int, stochastic: bool = False):
        self.step, self.bits, self.stochastic = step, bits, stochastic

    def encode(self, name: str, x: np.ndarray, rng: Any, state: Any) -> tuple[TensorRecord, None]:
        return int_record(name, x, self.step, self.bits, rng if self.stochastic else None), None
