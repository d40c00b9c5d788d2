"""Models: ``build_model(name, input_shape, num_classes, **args)`` over the ``MODELS`` registry."""

from fedsim.models.odenet import ODENet, ResNet, odeint_fixed
from fedsim.models.registry import MODELS, build_model, describe_models, model_arguments

__all__ = [
    "MODELS",
    "ODENet",
    "ResNet",
    "build_model",
    "describe_models",
    "model_arguments",
    "odeint_fixed",
]
