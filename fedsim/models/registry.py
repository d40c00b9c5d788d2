"""The model registry: a scenario names a model and its arguments, ``build_model`` builds it.

Besides the built-ins below, ``model.name`` may be an import path (``"mypkg.nets:build"``)
or a name registered in the ``fedsim.models`` entry-point group (fedsim/plugins.py); the
builder has the same signature: ``builder(input_shape, num_classes, **args)``.
"""

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
    builder = get_model_builder(name)
    own = model_arguments(name)
    open_ended = any(
        p.kind == p.VAR_KEYWORD for p in inspect.signature(builder).parameters.values()
    )
    for key in kwargs:
        if key not in own and not open_ended:
            raise ScenarioError(
                f"model {name} has no argument {key!r}; its arguments are {', '.join(own)}",
                field=f"model.args.{key}",
            )
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    try:
        model = builder(tuple(input_shape), int(num_classes), **kwargs)
    except (TypeError, ValueError) as err:
        raise ScenarioError(f"model {name}: {err}", field="model.args") from err
    if not isinstance(model, nn.Module):
        raise ScenarioError(
            f"model {name} returned {type(model).__name__}, not a torch.nn.Module",
            field="model.name",
        )
    return model


def get_model_builder(name: str) -> Callable[..., nn.Module]:
    """The builder ``model.name`` stands for: built-in, import path or entry point."""
    from fedsim.plugins import lookup_callable

    return lookup_callable(
        "model", name, MODELS, "a model builder(input_shape, num_classes, **args)"
    )


def model_arguments(name: str) -> dict[str, Any]:
    """Model ``name``'s keyword arguments and their defaults."""
    params = inspect.signature(get_model_builder(name)).parameters
    return {
        p: v.default
        for p, v in params.items()
        if p not in _POSITIONAL and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)
    }


def describe_models() -> list[tuple[str, str]]:
    """(name, one-line description) for each registered model, for ``fedsim list``."""
    return [(name, (inspect.getdoc(b) or "").splitlines()[0]) for name, b in MODELS.items()]
