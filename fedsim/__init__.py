"""fedsim: a federated-learning simulator whose bytes are exact and whose clock is simulated.

The Python API (docs/api.md)::

    import fedsim
    result = fedsim.run("quickstart", {"rounds": 2})
    result.summary, result.metrics, result.model_state, result.to_pandas()

This module must stay light: ``import fedsim.codecs`` and ``import fedsim.network`` go
through it, and those layers must not pull in torch. So the API is imported on first use
(module ``__getattr__``), not here.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "run": "fedsim.api",
    "run_experiment": "fedsim.api",
    "load_scenario": "fedsim.api",
    "load_run": "fedsim.api",
    "RunResult": "fedsim.api",
    "ExperimentResult": "fedsim.api",
    "save_model": "fedsim.runtime.model_io",
    "load_model": "fedsim.runtime.model_io",
    "model_sha256": "fedsim.runtime.outputs",
    "FedsimError": "fedsim.errors",
    "ScenarioError": "fedsim.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fedsim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
