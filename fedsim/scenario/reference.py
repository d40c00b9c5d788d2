"""Render the scenario reference (every key, its type and default) from the schema.

`python -m fedsim.scenario.reference` prints the table that docs/scenarios.md embeds; a
test checks the document still lists every key.
"""

from __future__ import annotations

from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from fedsim.scenario.schema import Scenario, UnitName


def _type_name(ann: Any) -> str:
    for meta in getattr(ann, "__metadata__", ()):
        if isinstance(meta, UnitName):
            return str(meta)
    origin = get_origin(ann)
    if origin is None:
        return getattr(ann, "__name__", str(ann))
    args = [a for a in get_args(ann) if a is not type(None)]
    if str(origin).endswith("Literal"):
        return " | ".join(repr(a) for a in get_args(ann))
    if origin is list:
        return f"list[{', '.join(_type_name(a) for a in args)}]"
    if origin is dict:
        return "table"
    if len(args) == 1:
        return _type_name(args[0]) + " (optional)"
    return " | ".join(_type_name(a) for a in args)


def keys(model: type[BaseModel] = Scenario, prefix: str = "") -> list[tuple[str, str, str, str]]:
    rows = []
    for name, f in model.model_fields.items():
        key = f"{prefix}{name}"
        ann = f.annotation
        sub = None
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            sub = ann
        elif (
            get_origin(ann) is list
            and get_args(ann)
            and isinstance(get_args(ann)[0], type)
            and issubclass(get_args(ann)[0], BaseModel)
        ):
            sub = get_args(ann)[0]
            key += "[]"
        if sub is not None and sub.model_fields and name != "variants":
            rows.extend(keys(sub, key + "."))
            continue
        if f.default_factory is not None:
            default = repr(f.default_factory())
        elif f.default is PydanticUndefined:
            default = "(required)"
        else:
            default = repr(f.default)
        # pydantic moves a required field's Annotated metadata (the unit) to f.metadata
        unit = next((str(m) for m in f.metadata if isinstance(m, UnitName)), None)
        rows.append((key, unit or _type_name(ann), default, f.description or ""))
    return rows


def markdown() -> str:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, typ, default, desc in keys():
        typ = typ.replace("|", "\\|")
        lines.append(f"| `{key}` | {typ} | `{default}` | {desc} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(markdown(), end="")
