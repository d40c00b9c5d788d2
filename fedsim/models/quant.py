"""Fake quantization for training and evaluation: LSQ layers, min-max fake quant, kurtosis.

- ``lsq_quantize``: learned step size quantization (Esser et al., ICLR 2020, "Learned Step
  Size Quantization"): x̂ = s·clip(round(x/s), −Q_N, Q_P), straight-through estimator for
  round, and for s the gradient ∂x̂/∂s = round(x/s) − x/s inside the range, −Q_N below, Q_P
  above, scaled by g = 1/sqrt(numel·Q_P) (the paper's gradient scale).
- ``LSQConv2d`` / ``LSQLinear``: conv/linear layers with a learnable weight step ``w_step``
  and, optionally, a learnable step ``a_step`` for the layer's input. ``lsq_convert`` turns
  a model's Conv2d/Linear layers into them in place (same parameter names, plus the steps),
  so state_dict names stay those of the plain model plus ``<layer>.w_step``/``a_step``.
- ``fake_quant_symmetric`` (per-channel symmetric min-max, STE) and ``fake_quant_minmax``
  (per-tensor asymmetric over a given range, STE): the quantizers of QAT and PTQ.
- ``kurtosis``: mean(((W − μ)/σ)^4), the statistic KURE regularizes (Shkolnik et al. 2020).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round(x) forward, identity backward."""
    return x + (torch.round(x) - x).detach()


def grad_scale(x: torch.Tensor, g: float) -> torch.Tensor:
    """x forward, gradient multiplied by g backward."""
    return (x - x * g).detach() + x * g


def signed_range(bits: int) -> tuple[int, int]:
    """(Q_N, Q_P) for signed b-bit codes: −2^(b−1) .. 2^(b−1)−1."""
    return 2 ** (bits - 1), 2 ** (bits - 1) - 1


def unsigned_range(bits: int) -> tuple[int, int]:
    return 0, 2**bits - 1


def lsq_quantize(x: torch.Tensor, s: torch.Tensor, qn: int, qp: int) -> torch.Tensor:
    """LSQ fake quantization of x with step s (a 1-element tensor) over [−qn, qp]."""
    g = 1.0 / math.sqrt(x.numel() * max(qp, 1))
    s = grad_scale(s, g)
    return round_ste(torch.clamp(x / s, -qn, qp)) * s


def lsq_init_step(x: torch.Tensor, qp: int) -> float:
    """LSQ's initial step: 2·mean|x| / sqrt(Q_P) (a tiny positive value for an all-zero x)."""
    v = 2.0 * float(x.detach().abs().mean()) / math.sqrt(max(qp, 1))
    return v if v > 0 else 1e-8


def lsq_codes(w: torch.Tensor, s: float, bits: int) -> torch.Tensor:
    """The signed integer codes clip(round(w/s), −Q_N, Q_P) (what the `int` wire mode sends)."""
    qn, qp = signed_range(bits)
    return torch.clamp(torch.round(w / s), -qn, qp)


class _LSQMixin:
    """Shared by LSQConv2d and LSQLinear. Set up by ``lsq_convert``, not by the constructor."""

    w_bits: int
    a_bits: int | None
    a_signed: bool | None

    def _setup_lsq(self, w_bits: int, a_bits: int | None) -> None:
        self.w_bits = int(w_bits)
        self.a_bits = int(a_bits) if a_bits else None
        self.a_signed = None  # decided from the first batch seen (post-ReLU inputs: unsigned)
        _, qp = signed_range(self.w_bits)
        self.w_step = nn.Parameter(torch.tensor([lsq_init_step(self.weight, qp)]))
        # 0 means "not initialized yet": the first training batch sets LSQ's initial value,
        # and until then (or when activations are not quantized) the input passes unchanged
        self.a_step = nn.Parameter(torch.zeros(1))

    def quant_weight(self) -> torch.Tensor:
        qn, qp = signed_range(self.w_bits)
        return lsq_quantize(self.weight, self.w_step, qn, qp)

    def quant_input(self, x: torch.Tensor) -> torch.Tensor:
        if not self.a_bits:
            return x
        uninitialized = float(self.a_step.detach()) <= 0
        if uninitialized and not self.training:
            return x
        if self.a_signed is None or uninitialized:  # decided on training data only
            self.a_signed = bool((x.detach() < 0).any())
        qn, qp = signed_range(self.a_bits) if self.a_signed else unsigned_range(self.a_bits)
        if uninitialized:
            with torch.no_grad():
                self.a_step.fill_(lsq_init_step(x, qp))
        return lsq_quantize(x, self.a_step, qn, qp)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, *args):
        # a plain model's state (no steps) loads into an LSQ layer: steps keep their values
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, *args)
        for key in ("w_step", "a_step"):
            if prefix + key in missing:
                missing.remove(prefix + key)


class LSQConv2d(_LSQMixin, nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.quant_input(x), self.quant_weight(), self.bias)


class LSQLinear(_LSQMixin, nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(self.quant_input(x), self.quant_weight(), self.bias)


def quant_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's conv and linear layers in definition order (name, module)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def lsq_convert(
    model: nn.Module,
    bits: int,
    *,
    first_last_bits: int | None = 8,
    act_bits: int | None = None,
) -> dict[str, int]:
    """Turn every Conv2d/Linear of model into its LSQ version, in place and idempotently.

    Weights at `bits` (first and last layer at `first_last_bits`, None = `bits` too);
    inputs of every layer but the first at `act_bits` (None = not quantized; the first
    layer's input is the data). Returns {layer name: weight bits}. The Parameter objects of
    weight and bias are kept, so their state_dict names do not change.
    """
    layers = quant_layers(model)
    out: dict[str, int] = {}
    for i, (name, m) in enumerate(layers):
        edge = i == 0 or i == len(layers) - 1
        wb = first_last_bits if (edge and first_last_bits) else bits
        if not isinstance(m, _LSQMixin):
            m.__class__ = LSQConv2d if isinstance(m, nn.Conv2d) else LSQLinear
            m._setup_lsq(wb, None if i == 0 else act_bits)
        out[name] = m.w_bits
    return out


def lsq_bits(model: nn.Module) -> dict[str, int]:
    """{layer name: weight bits} of the model's LSQ layers."""
    return {n: m.w_bits for n, m in model.named_modules() if isinstance(m, _LSQMixin)}


# ---- min-max fake quantization (QAT, PTQ) --------------------------------------------------
def symmetric_scale(w: torch.Tensor, bits: int, per_channel: bool = True) -> torch.Tensor:
    """max|w| / Q_P per output channel (axis 0) or per tensor, broadcastable to w."""
    _, qp = signed_range(bits)
    a = w.detach().abs()
    if per_channel and w.dim() >= 2:
        m = a.reshape(a.shape[0], -1).amax(dim=1).reshape(-1, *([1] * (w.dim() - 1)))
    else:
        m = a.max()
    return torch.clamp(m, min=1e-12) / max(qp, 1)


def fake_quant_symmetric(w: torch.Tensor, bits: int, per_channel: bool = True) -> torch.Tensor:
    """Symmetric min-max fake quantization (straight-through gradient). 1 bit: sign·mean|w|."""
    if bits >= 32:
        return w
    if bits == 1:
        dims = tuple(range(1, w.dim())) if per_channel and w.dim() >= 2 else None
        scale = w.detach().abs().mean(dim=dims, keepdim=True) if dims else w.detach().abs().mean()
        return w + (torch.sign(w) * scale - w).detach()
    qn, qp = signed_range(bits)
    s = symmetric_scale(w, bits, per_channel)
    return w + (torch.clamp(torch.round(w / s), -qn, qp) * s - w).detach()


def fake_quant_minmax(x: torch.Tensor, lo: float, hi: float, bits: int) -> torch.Tensor:
    """Asymmetric per-tensor fake quantization of x over [lo, hi] (STE inside the range)."""
    if bits >= 32:
        return x
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)  # zero stays exactly representable
    levels = 2**bits - 1
    step = (hi - lo) / levels if hi > lo else 1.0
    zero = round(-lo / step)
    q = (torch.clamp(torch.round(x / step) + zero, 0, levels) - zero) * step
    return x + (q - x).detach()


def kurtosis(w: torch.Tensor) -> torch.Tensor:
    """mean(((w − μ)/σ)^4) with the population σ (1.8 for uniform, 3 for Gaussian)."""
    w = w.reshape(-1)
    mu = w.mean()
    sigma = torch.sqrt(((w - mu) ** 2).mean() + 1e-12)
    return (((w - mu) / sigma) ** 4).mean()
