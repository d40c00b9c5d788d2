"""Post-training quantization (PTQ) of a trained model at several bit configurations.

As in Gupta et al. (TMLR 2023, quantization-robust FL): weights symmetric min-max per
output channel; activations (the input of every conv/linear layer) per tensor, their
ranges calibrated on a few training batches of the full-precision model; "W3"/"W2" are
weight-only. A config is ``W<bits>[A<bits>][PT]``: the suffix ``PT`` quantizes weights
with one scale per tensor instead of per output channel ("W2PT": per-tensor 2-bit weights,
where one large channel sets the step of every other). ``ptq_table(model, dataset,
configs)`` -> {config: test accuracy}.
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from fedsim.eval.evaluate import evaluate
from fedsim.models.quant import fake_quant_minmax, fake_quant_symmetric, quant_layers

# PAPERS.md §2's columns: W4A4 does not separate methods on the narrow CNN, W2 and the
# per-tensor configs do
DEFAULT_CONFIGS = ("W8A8", "W6A6", "W4A8", "W4A4", "W3A3", "W2A8", "W3", "W2", "W3PT", "W2PT")
_CONFIG = re.compile(r"W([0-9]+)(?:A([0-9]+))?(PT)?")


class PTQConfig(NamedTuple):
    w_bits: int
    a_bits: int | None  # None: activations stay fp32 (weight-only)
    per_channel: bool = True  # False: one weight scale per tensor (suffix PT)


def parse_config(cfg: str) -> PTQConfig:
    """ "W4A8" -> (4, 8, True); "W3" -> (3, None, True) (weights only); "W2PT" -> (2, None,
    False) (per-tensor weight scale)."""
    m = _CONFIG.fullmatch(cfg.strip().upper())
    if not m or not 1 <= int(m.group(1)) <= 32 or (m.group(2) and not 1 <= int(m.group(2)) <= 32):
        raise ValueError(
            f"bad PTQ config {cfg!r}: expected W<bits>[A<bits>][PT], e.g. W4A8 or W2PT"
        )
    a_bits = int(m.group(2)) if m.group(2) else None
    return PTQConfig(int(m.group(1)), a_bits, per_channel=not m.group(3))


def _tensor(a: np.ndarray) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(np.ascontiguousarray(a))


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    """Test accuracy through the one evaluation path (fedsim/eval/evaluate.py)."""
    return evaluate(model, x, y, batch)[0] if len(y) else 0.0


def calibrate(model: nn.Module, x: torch.Tensor, batches: int, batch_size: int) -> dict[str, tuple]:
    """(min, max) of every conv/linear layer's input over the first calibration batches."""
    ranges: dict[str, list[float]] = {}
    hooks = []
    for name, m in quant_layers(model):

        def hook(mod, inputs, name=name):
            v = inputs[0].detach()
            lo, hi = float(v.min()), float(v.max())
            r = ranges.setdefault(name, [lo, hi])
            r[0], r[1] = min(r[0], lo), max(r[1], hi)

        hooks.append(m.register_forward_pre_hook(hook))
    model.eval()
    try:
        with torch.no_grad():
            for b in range(batches):
                xb = x[b * batch_size : (b + 1) * batch_size]
                if len(xb):
                    model(xb)
    finally:
        for h in hooks:
            h.remove()
    return {k: tuple(v) for k, v in ranges.items()}


def quantize_copy(
    model: nn.Module,
    w_bits: int,
    a_bits: int | None,
    ranges: dict[str, tuple],
    *,
    per_channel: bool = True,
) -> nn.Module:
    """A copy of model with quantized weights (per output channel or per tensor) and (if
    a_bits) input hooks."""
    q = copy.deepcopy(model)
    with torch.no_grad():
        for _, m in quant_layers(q):
            m.weight.copy_(fake_quant_symmetric(m.weight, w_bits, per_channel=per_channel))
    if a_bits:
        for name, m in quant_layers(q):
            if name in ranges:
                lo, hi = ranges[name]
                m.register_forward_pre_hook(
                    lambda mod, inp, lo=lo, hi=hi: (fake_quant_minmax(inp[0], lo, hi, a_bits),)
                )
    return q


def ptq_table(
    model: nn.Module,
    dataset: Any,
    configs: Sequence[str] = DEFAULT_CONFIGS,
    *,
    calib_batches: int = 4,
    batch_size: int = 128,
) -> dict[str, float]:
    """{"fp32": acc, config: acc, ...} of model's PTQ versions on dataset's test split.

    The model is not modified. Calibration uses the first `calib_batches` batches of the
    training split (fixed order, so the table is deterministic)."""
    x_test, y_test = _tensor(dataset.x_test), _tensor(dataset.y_test)
    x_cal = _tensor(dataset.x_train[: calib_batches * batch_size])
    out = {"fp32": accuracy(model, x_test, y_test)}
    ranges = calibrate(model, x_cal, calib_batches, batch_size)
    for cfg in configs:
        c = parse_config(cfg)
        q = quantize_copy(model, c.w_bits, c.a_bits, ranges, per_channel=c.per_channel)
        out[cfg] = accuracy(q, x_test, y_test)
    return out
