"""Algorithms, models and datasets from outside fedsim: import paths and entry points.

A scenario names a built-in (``"fedavg"``), an import path (``"mypkg.methods:MyAlgo"``), or
the name an installed distribution registers under the entry-point group ``fedsim.algorithms``,
``fedsim.models`` or ``fedsim.datasets``. Built-in names win over entry points of the same
name. The coordinator and every worker resolve the name the same way, so the module must be
importable in each process that trains clients (docs/extending.md, which also states the
trust model: a worker imports what its authenticated coordinator names).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from collections.abc import Mapping
from typing import Any

from fedsim.errors import ScenarioError

# kind -> (entry-point group, the scenario field that names it)
KINDS = {
    "algorithm": ("fedsim.algorithms", "algorithm.name"),
    "model": ("fedsim.models", "model.name"),
    "dataset": ("fedsim.datasets", "data.dataset"),
}


def is_import_path(name: str) -> bool:
    return ":" in name


def import_object(spec: str, *, field: str | None = None) -> Any:
    """``"package.module:attr"`` (attr may be dotted) -> the object; one-line ScenarioError."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ScenarioError(
            f"{spec!r}: an import path looks like 'package.module:name'", field=field
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise ScenarioError(
            f"cannot import {module_name!r} for {spec!r} ({e}); it must be importable in every "
            "process that runs clients (pip install it, or put it on PYTHONPATH)",
            field=field,
        ) from None
    except Exception as e:  # the user's module raised while importing
        raise ScenarioError(
            f"importing {module_name!r} for {spec!r} failed: {type(e).__name__}: {e}", field=field
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ScenarioError(f"module {module_name!r} has no {attr!r}", field=field)
        obj = getattr(obj, part)
    return obj


def entry_points(kind: str) -> dict[str, importlib.metadata.EntryPoint]:
    """The installed entry points of ``kind``'s group, by name."""
    group, _ = KINDS[kind]
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=group)}


def entry_point_origin(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"entry point: {dist.name} {dist.version}" if dist is not None else "entry point"


def resolve(kind: str, name: str, builtins: Mapping[str, Any]) -> Any | None:
    """The object a scenario's name stands for, or None when nothing has that name."""
    _, field = KINDS[kind]
    if name in builtins:
        return builtins[name]
    if is_import_path(name):
        return import_object(name, field=field)
    ep = entry_points(kind).get(name)
    if ep is None:
        return None
    return import_object(ep.value, field=field)


def lookup_callable(kind: str, name: str, builtins: Mapping[str, Any], what: str) -> Any:
    """Like ``resolve``, but a name that finds nothing or nothing callable is a ScenarioError."""
    _, field = KINDS[kind]
    obj = resolve(kind, name, builtins)
    if obj is None:
        raise ScenarioError(
            f"unknown {kind} {name!r}; choose one of {known_names(kind, builtins)}", field=field
        )
    if not callable(obj):
        raise ScenarioError(f"{name!r} is not callable ({what})", field=field)
    return obj


def known_names(kind: str, builtins: Mapping[str, Any]) -> str:
    """For "unknown name" messages: the built-ins, the entry points, the import-path form."""
    names = sorted(builtins) + sorted(set(entry_points(kind)) - set(builtins))
    return f"{', '.join(names)}, or an import path 'package.module:name'"


def with_origins(kind: str, builtin_rows: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """``fedsim list`` rows (name, origin, description): the built-ins, then entry points."""
    rows = [(name, "builtin", doc) for name, doc in builtin_rows]
    seen = {name for name, _ in builtin_rows}
    for name, ep in sorted(entry_points(kind).items()):
        if name in seen:
            continue
        try:
            obj = import_object(ep.value)
            doc = getattr(obj, "summary", None) or _first_line(obj)
        except ScenarioError as e:
            doc = f"cannot load: {e}"
        rows.append((name, f"{entry_point_origin(ep)} ({ep.value})", doc))
    rows.append(("package.module:name", "import path", f"any importable {kind}, named in place"))
    return rows


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
