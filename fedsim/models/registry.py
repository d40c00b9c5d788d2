"""The model registry: a scenario names a model and its arguments, ``build_model`` builds it."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from fedsim.errors import ScenarioError
from fedsim.models.cnn import CNN
from fedsim.models.mlp import MLP
from fedsim.models.odenet import ODENet, ResNet
from fedsim.models.resnet18 import resnet18

# name -> builder(input_shape, num_classes, **args). Keyword arguments are the model's knobs
# (``model.args`` in a scenario); the first docstring line is its ``fedsim list`` entry.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "cnn": CNN,
    "resnet18": resnet18,
    "odenet": ODENet,
    "resnet": ResNet,
}

_POSITIONAL = ("self", "input_shape", "num_classes")


def build_model(
    name: str, input_shape: Sequence[int], num_classes: int, **kwargs: Any
) -> nn.Module:
    """Build model ``name`` for inputs of ``input_shape`` (no batch axis) and ``num_classes``.

    Weights come from torch's default initializers, so the model is a function of the
    torch.manual_seed in force. Bad names or arguments raise ScenarioError (model.*).
    """
    builder = MODELS.get(name)
    if builder is None:
        raise ScenarioError(
            f"unknown model {name!r}; choose one of {', '.join(MODELS)}", field="model.name"
        )
    own = model_arguments(name)
    for key in kwargs:
        if key not in own:
            raise ScenarioError(
                f"model {name} has no argument {key!r}; its arguments are {', '.join(own)}",
                field=f"model.args.{key}",
            )
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    try:
        return builder(tuple(input_shape), int(num_classes), **kwargs)
    except (TypeError, ValueError) as err:
        raise ScenarioError(f"model {name}: {err}", field="model.args") from err


def model_arguments(name: str) -> dict[str, Any]:
    """Model ``name``'s keyword arguments and their defaults."""
    params = inspect.signature(MODELS[name]).parameters
    return {p: v.default for p, v in params.items() if p not in _POSITIONAL}


def describe_models() -> list[tuple[str, str]]:
    """(name, one-line description) for each registered model, for ``fedsim list``."""
    return [(name, (inspect.getdoc(b) or "").splitlines()[0]) for name, b in MODELS.items()]
