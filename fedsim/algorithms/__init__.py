"""Algorithm registry: one class per method, one file each.

Every module in this package is imported and each `Algorithm` subclass it defines with a
`name` is registered, so adding a method means adding a file. A scenario may also name an
`Algorithm` subclass outside fedsim, by import path (``"mypkg.methods:MyAlgo"``) or by the
name an installed package registers in the ``fedsim.algorithms`` entry-point group
(fedsim/plugins.py, docs/extending.md).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

from pydantic import ValidationError

from fedsim.algorithms.base import Algorithm
from fedsim.errors import ScenarioError

ALGORITHMS: dict[str, type[Algorithm]] = {}


def register(cls: type[Algorithm]) -> type[Algorithm]:
    ALGORITHMS[cls.name] = cls
    return cls


def _discover() -> None:
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if mod.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{mod.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(obj, Algorithm)
                and obj.__module__ == module.__name__
                and obj.name != "base"
            ):
                register(obj)


_discover()


def get_algorithm(name: str) -> type[Algorithm]:
    """The class ``algorithm.name`` stands for: built-in, import path or entry point."""
    from fedsim import plugins

    cls = plugins.resolve("algorithm", name, ALGORITHMS)
    if cls is None:
        raise ScenarioError(
            f"unknown algorithm {name!r} (known: {plugins.known_names('algorithm', ALGORITHMS)})",
            field="algorithm.name",
        )
    if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        raise ScenarioError(
            f"{name!r} is not a subclass of fedsim.algorithms.base.Algorithm",
            field="algorithm.name",
        )
    return cls


def algorithm_options(scenario: Any) -> tuple[type[Algorithm], Any]:
    cfg = scenario.algorithm
    cls = get_algorithm(cfg.name)
    extra = dict(cfg.model_extra or {})
    try:
        opts = cls.Options.model_validate(extra)
    except ValidationError as e:
        err = e.errors()[0]
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        field = "algorithm." + ".".join(str(p) for p in err["loc"])
        raise ScenarioError(msg, field=field) from None
    return cls, opts


def build_algorithm(scenario: Any) -> Algorithm:
    cls, opts = algorithm_options(scenario)
    return cls(scenario, opts)


def describe_algorithms() -> list[tuple[str, str]]:
    return [(n, ALGORITHMS[n].summary) for n in sorted(ALGORITHMS)]
