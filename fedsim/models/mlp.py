"""``mlp``: a fully connected network on the flattened input (McMahan et al. 2017's "2NN")."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn


class MLP(nn.Module):
    """Multilayer perceptron: flatten -> [Linear -> ReLU] per hidden size -> Linear."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (200, 200),
    ):
        super().__init__()
        sizes = [math.prod(input_shape), *(int(h) for h in hidden)]
        layers: list[nn.Module] = [nn.Flatten()]
        for fan_in, fan_out in zip(sizes, sizes[1:], strict=False):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
