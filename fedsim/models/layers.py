"""Small pieces the model files share: the normalization choice and the input-shape check."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

NORMS = ("group", "batch")


def group_count(channels: int) -> int:
    """GroupNorm's group count for ``channels``: the most groups, at most 32, that divide the
    channels and keep at least 2 channels per group.

    32 groups is Wu & He's default (GroupNorm, ECCV 2018, Sec. 3.1); Chen et al.'s ODE-Net
    code takes min(32, C), which at widths up to 32 puts one channel in each group
    (instance norm: every channel loses its scale). Here width 8 gets 4 groups of 2,
    16 gets 8, 64 gets 32 (the same as min(32, C) from width 64 on).
    """
    if channels < 2:
        return 1
    return max(g for g in range(1, min(32, channels // 2) + 1) if channels % g == 0)


def make_norm(kind: str, channels: int) -> nn.Module:
    """GroupNorm (``group_count`` groups: at least 2 channels each), or BatchNorm2d."""
    if kind == "group":
        return nn.GroupNorm(group_count(channels), channels)
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
