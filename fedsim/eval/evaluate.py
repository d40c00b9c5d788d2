"""Test accuracy and loss of a model: the one evaluation path (runs, methods, reports)."""

from __future__ import annotations

import torch


def evaluate(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of `model` on (x, y), in eval mode, batch by batch."""
    model.eval()
    correct = 0
    loss = 0.0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            out = model(x[i : i + batch])
            loss += float(torch.nn.functional.cross_entropy(out, y[i : i + batch], reduction="sum"))
            correct += int((out.argmax(1) == y[i : i + batch]).sum())
    return correct / len(y), loss / len(y)
