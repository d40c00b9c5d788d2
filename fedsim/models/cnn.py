"""``cnn``: the LeNet-style CNN of McMahan et al. 2017 (FedAvg), for any small image size."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from fedsim.models.layers import image_shape


class CNN(nn.Module):
    """LeNet-style CNN: conv5x5(32)-pool-conv5x5(64)-pool-fc(512)-fc(classes).

    "Same" padding keeps each conv's size, so each pool halves it: 28x28 -> 7x7, 32x32 ->
    8x8, 8x8 -> 2x2 before the fully connected layers (1,663,370 parameters on MNIST, as
    in McMahan et al. 2017, Sec. 3).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (32, 64),
        kernel_size: int = 5,
        hidden: int = 512,
    ):
        super().__init__()
        c, h, w = image_shape(input_shape, "cnn")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size: {kernel_size} must be odd (same padding)")
        layers: list[nn.Module] = []
        for c_out in channels:
            if h < 2 or w < 2:
                raise ValueError(
                    f"channels: {len(channels)} conv+pool stages shrink {input_shape} to nothing"
                )
            layers += [
                nn.Conv2d(c, int(c_out), kernel_size, padding=kernel_size // 2),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            c, h, w = int(c_out), h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * h * w, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
