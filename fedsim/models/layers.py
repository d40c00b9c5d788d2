"""Small pieces the model files share: the normalization choice and the input-shape check."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

NORMS = ("group", "batch")


def make_norm(kind: str, channels: int) -> nn.Module:
    """GroupNorm with min(32, C) groups (as Chen et al.'s ODE-Net code), or BatchNorm2d."""
    if kind == "group":
        return nn.GroupNorm(min(32, channels), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"norm: {kind!r} is not one of {', '.join(NORMS)}")


def image_shape(input_shape: Sequence[int], model: str) -> tuple[int, int, int]:
    """(C, H, W) of an image input, or a ValueError saying the model needs images."""
    if len(input_shape) != 3:
        raise ValueError(
            f"{model} needs image inputs (C, H, W) but the dataset gives {tuple(input_shape)}; "
            "use model mlp for vector data"
        )
    c, h, w = (int(s) for s in input_shape)
    return c, h, w
