"""``odenet`` and ``resnet``: the Neural-ODE lightweight ResNet and its ResNet counterpart.

Hoshino, Kawakami, Matsutani, "Neural ODE as a lightweight ResNet" (arXiv 2208.09478):
each stage's stack of n residual blocks becomes one ODE block that reuses a single block's
weights for C iterations, so an ODE-Net costs one block per stage on the wire. Both nets
share one skeleton (PAPERS.md Sec. 3)::

    stem conv3x3 -> per stage s: [downsampler (s > 0)] -> body -> norm-ReLU-GAP-linear

where the body is an ODE block (``ODENet``) or n distinct residual blocks (``ResNet``). Stage
0 has no downsampler: the stem already gives ``width`` channels at full resolution; later
stages halve the resolution and double the width in a pre-activation residual block with
its own weights. The residual function is f(z) = conv3x3(ReLU(norm(conv3x3(ReLU(norm(z)))))).

The ODE block integrates dz/dt = f(z) with C fixed steps of size h (``step="1/C"``: h = 1/C,
fixed integration time, default; ``step=1.0``: h = 1, exactly a ResNet with C weight-tied
blocks). ``norm="group"`` (default) keeps every parameter shape independent of C, so models
trained with different C average directly. ``norm="batch"`` gives the ODE block one BatchNorm
pair per iteration index (a reused BatchNorm would pool statistics of C different
distributions): the shared convs stay C-independent, but the block then owns ``iterations``
BatchNorm pairs at construction, so parameter and buffer counts depend on C and
``set_iterations`` cannot go above the C it was built with.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F

from fedsim.models.layers import image_shape, make_norm

SOLVERS = ("euler", "rk4")


def odeint_fixed(
    f: Callable[[Any], Any] | Sequence[Callable[[Any], Any]],
    z0: Any,
    t1: float = 1.0,
    steps: int = 1,
    method: str = "euler",
) -> Any:
    """Integrate the autonomous ODE dz/dt = f(z) from t = 0 to t1 in ``steps`` fixed steps.

    ``f`` is one callable, or a list/tuple of ``steps`` callables (step i uses f[i]; the ODE
    block's per-iteration BatchNorm). Works on tensors (plain loop, so autograd
    backpropagates through it; no adjoint) and on floats or numpy arrays.
    ``method="euler"``: z += h f(z). ``method="rk4"``: classic Runge-Kutta, weights
    1/6, 1/3, 1/3, 1/6 (Kutta 1901; Hairer, Norsett, Wanner, Solving ODEs I, Sec. II.1,
    Table 1.2, beside the 3/8 rule it is not).
    """
    if method not in SOLVERS:
        raise ValueError(f"solver: {method!r} is not one of {', '.join(SOLVERS)}")
    if steps < 1:
        raise ValueError(f"iterations: {steps} must be >= 1")
    per_step = isinstance(f, list | tuple)
    if per_step and len(f) != steps:
        raise ValueError(f"odeint_fixed: {len(f)} per-step fields for {steps} steps")
    h = t1 / steps
    z = z0
    for i in range(steps):
        g = f[i] if per_step else f
        if method == "euler":
            z = z + h * g(z)
        else:
            k1 = g(z)
            k2 = g(z + (h / 2) * k1)
            k3 = g(z + (h / 2) * k2)
            k4 = g(z + h * k3)
            z = z + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
    return z


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class ResidualFunction(nn.Module):
    """f(z) = conv(ReLU(norm(conv(ReLU(norm(z)))))), optionally with one norm pair per step."""

    def __init__(self, channels: int, norm: str = "group", norm_copies: int = 1):
        super().__init__()
        self.norm1 = nn.ModuleList(make_norm(norm, channels) for _ in range(norm_copies))
        self.conv1 = conv3x3(channels, channels)
        self.norm2 = nn.ModuleList(make_norm(norm, channels) for _ in range(norm_copies))
        self.conv2 = conv3x3(channels, channels)

    def forward(self, z: Tensor, index: int = 0) -> Tensor:
        out = self.conv1(F.relu(self.norm1[index](z)))
        return self.conv2(F.relu(self.norm2[index](out)))


class ResidualBlock(nn.Module):
    """z + f(z) with its own weights: one block of the ResNet counterpart."""

    def __init__(self, channels: int, norm: str = "group"):
        super().__init__()
        self.f = ResidualFunction(channels, norm)

    def forward(self, z: Tensor) -> Tensor:
        return z + self.f(z)


class ODEBlock(nn.Module):
    """C fixed steps of dz/dt = f(z) with one shared f: z <- z + h f(z) (Euler) or RK4."""

    def __init__(
        self,
        channels: int,
        iterations: int,
        step: str | float = "1/C",
        solver: str = "euler",
        norm: str = "group",
    ):
        super().__init__()
        if solver not in SOLVERS:
            raise ValueError(f"solver: {solver!r} is not one of {', '.join(SOLVERS)}")
        if step != "1/C" and not (isinstance(step, int | float) and step > 0):
            raise ValueError(f'step: {step!r} must be "1/C" or a positive number')
        self.per_iteration_norm = norm == "batch"
        self.f = ResidualFunction(channels, norm, iterations if self.per_iteration_norm else 1)
        self.step = step
        self.solver = solver
        self.iterations = 0
        self.set_iterations(iterations)

    def set_iterations(self, iterations: int) -> None:
        built = len(self.f.norm1)
        if iterations < 1:
            raise ValueError(f"iterations: {iterations} must be >= 1")
        if self.per_iteration_norm and iterations > built:
            raise ValueError(
                f"iterations: {iterations} exceeds the {built} per-iteration BatchNorms this "
                'model was built with; build with more iterations or use norm = "group"'
            )
        self.iterations = int(iterations)

    def step_size(self) -> float:
        return 1.0 / self.iterations if self.step == "1/C" else float(self.step)

    def forward(self, z: Tensor) -> Tensor:
        c = self.iterations
        f = (
            [functools.partial(self.f, index=i) for i in range(c)]
            if self.per_iteration_norm
            else self.f
        )
        t1 = 1.0 if self.step == "1/C" else float(self.step) * c
        return odeint_fixed(f, z, t1=t1, steps=c, method=self.solver)


class Downsample(nn.Module):
    """Pre-activation residual block that halves H and W and changes the width (own weights).

    As the ResBlock of Chen et al.'s ODE-Net code (torchdiffeq examples/odenet_mnist.py):
    the 1x1 stride-2 shortcut reads the pre-activated input.
    """

    def __init__(self, c_in: int, c_out: int, norm: str = "group"):
        super().__init__()
        self.norm1 = make_norm(norm, c_in)
        self.conv1 = conv3x3(c_in, c_out, stride=2)
        self.norm2 = make_norm(norm, c_out)
        self.conv2 = conv3x3(c_out, c_out)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.norm1(x))
        shortcut = self.shortcut(out)
        out = self.conv1(out)
        return self.conv2(F.relu(self.norm2(out))) + shortcut


class StagedNet(nn.Module):
    """The skeleton both nets share; ``make_body(channels)`` builds each stage's body."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        width: int,
        stages: int,
        norm: str,
        make_body: Callable[[int], nn.Module],
        name: str,
    ):
        super().__init__()
        c, _, _ = image_shape(input_shape, name)
        if stages < 1 or width < 1:
            raise ValueError(f"stages and width: {stages}, {width} must both be >= 1")
        widths = [width * 2**s for s in range(stages)]
        self.stem = conv3x3(c, width)
        self.down = nn.ModuleList(
            [nn.Identity()]
            + [Downsample(a, b, norm) for a, b in zip(widths, widths[1:], strict=False)]
        )
        self.body = nn.ModuleList(make_body(w) for w in widths)
        self.head = nn.Sequential(
            make_norm(norm, widths[-1]),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(widths[-1], num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        z = self.stem(x)
        for down, body in zip(self.down, self.body, strict=True):
            z = body(down(z))
        return self.head(z)


class ODENet(StagedNet):
    """ODE-Net: per stage one ODE block reusing one residual block's weights C times."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        blocks: int = 3,
        iterations: int | None = None,
        step: str | float = "1/C",
        solver: str = "euler",
        norm: str = "group",
        width: int = 16,
        stages: int = 3,
    ):
        iterations = blocks if iterations is None else iterations

        def body(channels: int) -> ODEBlock:
            return ODEBlock(channels, iterations, step, solver, norm)

        super().__init__(input_shape, num_classes, width, stages, norm, body, "odenet")

    @property
    def iterations(self) -> int:
        return self.body[0].iterations

    def set_iterations(self, iterations: int) -> None:
        """Run every ODE block for ``iterations`` steps from now on (flexible FL)."""
        for block in self.body:
            block.set_iterations(iterations)

    def shared_parameter_names(self) -> list[str]:
        """Names of the parameters every iteration of an ODE block reuses (the codec sends
        each once). Per-iteration BatchNorms (norm="batch") are not shared."""
        shared = []
        for s, block in enumerate(self.body):
            for name, _ in block.f.named_parameters():
                if not (block.per_iteration_norm and name.startswith("norm")):
                    shared.append(f"body.{s}.f.{name}")
        return shared

    def parameter_reuse(self) -> dict[str, int]:
        """Each parameter's name -> how many iterations apply it in one forward pass
        (C for shared ones, 1 for the rest; RK4's four evaluations per step count as one)."""
        shared = set(self.shared_parameter_names())
        return {n: self.iterations if n in shared else 1 for n, _ in self.named_parameters()}


LAYOUTS = ("unrolled", "cifar")


class ResNet(StagedNet):
    """ResNet counterpart of odenet: the same stem, downsamplers and head, distinct blocks.

    ``layout="unrolled"`` (default): n residual blocks after every downsampler, exactly an
    ODE-Net with C = n whose iterations do not share weights; with 3 stages that is 6n+6
    weighted layers. ``layout="cifar"``: He et al.'s CIFAR ResNet (Deep Residual Learning,
    CVPR 2016, Sec. 4.2): the downsampler is the first of a stage's n blocks, so stages 2
    and 3 add n-1 blocks after it; with 3 stages that is 6n+2 layers, ResNet-20, 32, 44,
    56, 110 at n = 3, 5, 7, 9, 18. Layers count as He et al. count them: the stem, two 3x3
    convs per block, the classifier; the downsamplers' 1x1 projection shortcuts (He et al.'s
    option B; their CIFAR nets use parameter-free option A) are not counted.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        blocks: int = 3,
        norm: str = "group",
        width: int = 16,
        stages: int = 3,
        layout: str = "unrolled",
    ):
        if blocks < 1:
            raise ValueError(f"blocks: {blocks} must be >= 1")
        if layout not in LAYOUTS:
            raise ValueError(f"layout: {layout!r} is not one of {', '.join(LAYOUTS)}")
        stage_index = iter(range(stages))

        def body(channels: int) -> nn.Sequential:
            own = blocks - 1 if layout == "cifar" and next(stage_index) > 0 else blocks
            return nn.Sequential(*(ResidualBlock(channels, norm) for _ in range(own)))

        super().__init__(input_shape, num_classes, width, stages, norm, body, "resnet")
        self.layout = layout


def weighted_layers(model: nn.Module) -> int:
    """Layers as He et al. count a ResNet's depth: 3x3 convs and the linear classifier
    (the 1x1 projection shortcuts not counted); an ODE block counts once per iteration."""
    total = 0
    for module in model.modules():
        if isinstance(module, ODEBlock):
            total += 2 * (module.iterations - 1)  # its two convs count again per extra step
        if isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
            total += 1
        elif isinstance(module, nn.Linear):
            total += 1
    return total
