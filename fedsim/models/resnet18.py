"""``resnet18``: torchvision's ResNet-18 with the small-image (CIFAR) stem. Never pretrained."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from torch import nn

from fedsim.models.layers import image_shape, make_norm


def resnet18(input_shape: Sequence[int], num_classes: int, norm: str = "batch") -> nn.Module:
    """torchvision ResNet-18, 3x3 stride-1 stem and no max-pool (for 8x8 to 32x32 images).

    The small-image stem follows He et al. 2016 (Sec. 4.2) and the common CIFAR ports
    (e.g. kuangliu/pytorch-cifar): a 7x7 stride-2 conv and a max-pool would leave a 32x32
    image 8x8 before the first block. ``norm="group"`` swaps BatchNorm for GroupNorm
    (Hsieh et al. 2020: BatchNorm statistics break under non-IID clients).
    """
    import torchvision  # imported here: 0.18 GiB of RSS that runs without ResNet-18 never need

    c, _, _ = image_shape(input_shape, "resnet18")
    model = torchvision.models.resnet18(
        weights=None, num_classes=num_classes, norm_layer=partial(make_norm, norm)
    )
    model.conv1 = nn.Conv2d(c, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model
