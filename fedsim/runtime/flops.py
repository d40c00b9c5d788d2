"""Training FLOPs from torch's FlopCounterMode, counted once per model and batch shape.

Training one batch costs 3x its forward pass (forward + backward, the usual rule of thumb
used by e.g. Kaplan et al. 2020 and FedScale's compute model).
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

TRAIN_FACTOR = 3.0


def forward_flops(model: torch.nn.Module, input_shape: tuple[int, ...], batch: int) -> float:
    was_training = model.training
    model.eval()
    x = torch.zeros((batch, *input_shape))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return float(counter.get_total_flops())


class FlopModel:
    """Counts forward FLOPs per sample for a model once; training FLOPs follow from samples."""

    def __init__(self, model: torch.nn.Module, input_shape: tuple[int, ...], batch: int):
        batch = max(1, batch)
        self.forward_per_sample = forward_flops(model, input_shape, batch) / batch

    def train_flops(self, samples: int) -> float:
        return TRAIN_FACTOR * self.forward_per_sample * samples
