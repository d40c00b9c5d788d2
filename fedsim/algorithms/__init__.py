"""Algorithm registry: one class per method, one file each."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from fedsim.algorithms.base import Algorithm
from fedsim.algorithms.fedavg import FedAvg
from fedsim.algorithms.fedprox import FedProx
from fedsim.errors import ScenarioError

ALGORITHMS: dict[str, type[Algorithm]] = {cls.name: cls for cls in (FedAvg, FedProx)}


def register(cls: type[Algorithm]) -> type[Algorithm]:
    ALGORITHMS[cls.name] = cls
    return cls


def algorithm_options(scenario: Any) -> tuple[type[Algorithm], Any]:
    cfg = scenario.algorithm
    cls = ALGORITHMS.get(cfg.name)
    if cls is None:
        raise ScenarioError(
            f"unknown algorithm {cfg.name!r} (known: {', '.join(sorted(ALGORITHMS))})",
            field="algorithm.name",
        )
    extra = dict(cfg.model_extra or {})
    try:
        opts = cls.Options.model_validate(extra)
    except ValidationError as e:
        err = e.errors()[0]
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        field = "algorithm." + ".".join(str(p) for p in err["loc"])
        raise ScenarioError(msg, field=field) from None
    return cls, opts


def build_algorithm(scenario: Any) -> Algorithm:
    cls, opts = algorithm_options(scenario)
    return cls(scenario, opts)


def describe_algorithms() -> list[tuple[str, str]]:
    return [(n, ALGORITHMS[n].summary) for n in sorted(ALGORITHMS)]
