"""Loading a scenario: TOML file -> overrides -> pydantic validation -> cross checks.

Every failure becomes a `ScenarioError` naming the file and the dotted field, so the CLI
can print one line and exit 2.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import tomli_w
import tomllib
from pydantic import ValidationError

from fedsim.errors import ScenarioError
from fedsim.scenario.schema import Scenario

# Extra checks registered by other layers (algorithms, models, codecs ...). Each takes the
# validated scenario and returns (field, message) pairs for every problem it finds.
_CHECKS: list[Callable[[Scenario], Iterable[tuple[str, str]]]] = []


def register_check(fn: Callable[[Scenario], Iterable[tuple[str, str]]]) -> None:
    _CHECKS.append(fn)


def parse_override(item: str) -> tuple[str, Any]:
    """`a.b=value` -> ("a.b", value); the value is read as TOML if it parses, else a string."""
    if "=" not in item:
        raise ScenarioError(f"override {item!r} must look like key.path=value", field="--set")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ScenarioError(f"override {item!r} has an empty key", field="--set")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def apply_overrides(doc: dict, overrides: Sequence[tuple[str, Any]]) -> dict:
    doc = copy.deepcopy(doc)
    for key, value in overrides:
        node = doc
        parts = key.split(".")
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ScenarioError(f"cannot set {key}: {part} is not a table", field=key)
            node = nxt
        node[parts[-1]] = value
    return doc


def flatten(doc: Mapping, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """{"train": {"lr": 0.1}} and {"train.lr": 0.1} both give ("train.lr", 0.1); `model.args`
    and empty tables stay whole values."""
    for key, value in doc.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and dotted not in ("model.args",):
            yield from flatten(value, dotted + ".")
        else:
            yield dotted, value


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _field_of(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if not str(p).startswith("function-"))


def validate_doc(doc: dict, *, file: str | None = None) -> Scenario:
    try:
        scenario = Scenario.model_validate(doc)
    except ValidationError as e:
        err = e.errors()[0]
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if (
            "input" in err
            and err["type"] != "extra_forbidden"
            and not isinstance(err["input"], dict)
            and "got " not in msg
        ):
            msg = f"{msg} (got {err['input']!r})"
        raise ScenarioError(msg, file=file, field=_field_of(err["loc"])) from None
    for check in (_variant_names, _seed_keys, *_CHECKS):
        for field, msg in check(scenario):
            raise ScenarioError(msg, file=file, field=field)
    return scenario


# Files and folders an experiment folder (a scenario with variants) holds besides its variants.
RESERVED_NAMES = frozenset({"compare", "comparison.md", "comparison.html", "comparison.json"})


def _variant_names(scenario: Scenario) -> Iterable[tuple[str, str]]:
    """Each variant writes into --out/NAME: names are unique (also ignoring case, for the
    file systems that do) and stay clear of what the experiment folder writes itself."""
    seen: dict[str, int] = {}
    for i, v in enumerate(scenario.variants):
        key = v.name.casefold()
        if key in seen:
            j = seen[key]
            yield (
                f"variants.{i}.name",
                f"{v.name!r} is already the name of variants.{j} (variants write into "
                "--out/NAME, so names must differ, also in more than case)",
            )
        if key in RESERVED_NAMES:
            yield (
                f"variants.{i}.name",
                f"{v.name!r} is reserved for the comparison written beside the variants",
            )
        seen.setdefault(key, i)


def _seed_keys(scenario: Scenario) -> Iterable[tuple[str, str]]:
    if scenario.seeds is not None and scenario.repeats is not None:
        yield "repeats", "give seeds = [...] or repeats = N, not both"


SEED_FOLDER = "seed-{}"  # one repeat's run directory inside OUT (or OUT/<variant>)


def seed_scenarios(
    scenario: Scenario, seeds: Sequence[int] | None = None, *, file: str | None = None
) -> list[tuple[str, Scenario]]:
    """One run per seed: [("seed-N", the scenario with seed = N), ...] for `seeds` (else the
    file's `seeds`/`repeats`), or [("", scenario)] for a single run. Each repeat's resolved
    scenario holds only its own seed, so its scenario.toml reruns exactly that run."""
    chosen = list(seeds) if seeds is not None else scenario.seed_list()
    if chosen is None:
        return [("", scenario)]
    base = scenario.model_dump()
    return [
        (
            SEED_FOLDER.format(s),
            validate_doc({**base, "seed": s, "seeds": None, "repeats": None}, file=file),
        )
        for s in chosen
    ]


def with_seeds(
    runs: Sequence[tuple[str, Scenario]],
    seeds: Sequence[int] | None = None,
    *,
    file: str | None = None,
) -> list[tuple[str, Scenario]]:
    """(name, scenario) runs, each repeated once per seed (`seeds`, else its own
    seeds/repeats) as ("name/seed-N", ...) ("seed-N" for the unnamed run); a run without
    seeds stays as it is."""
    return [
        ("/".join(p for p in (name, sub) if p), one)
        for name, sc in runs
        for sub, one in seed_scenarios(sc, seeds, file=file)
    ]


def read_toml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ScenarioError("file not found", file=str(path))
    if path.is_dir():
        raise ScenarioError("is a directory, not a scenario file", file=str(path))
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"not valid TOML: {e}", file=str(path)) from None
    except UnicodeDecodeError:
        raise ScenarioError("not UTF-8 text", file=str(path)) from None
    except OSError as e:
        raise ScenarioError(f"cannot read: {e.strerror or e}", file=str(path)) from None


def load_scenario(path: str | Path, overrides: Sequence[str] = ()) -> Scenario:
    """Load a scenario file, or a shipped scenario by its bare name (``"quickstart"``)."""
    from fedsim.scenario.shipped import resolve_scenario_path

    path = resolve_scenario_path(path)
    doc = read_toml(path)
    try:
        doc = apply_overrides(doc, [parse_override(o) for o in overrides])
    except ScenarioError as e:  # say which file the override was meant for
        raise ScenarioError(e.message, file=str(path), field=e.field) from None
    scenario = validate_doc(doc, file=str(path))
    _resolve_paths(scenario, Path(path).resolve().parent)
    return scenario


# Settings naming a file or folder: a relative one is relative to the scenario file.
PATH_FIELDS = (
    ("data", "path"),
    ("data", "root"),
    ("network.availability", "trace"),
    ("runtime", "state_dir"),
    ("runtime", "curve_keys"),
)


def _resolve_paths(scenario: Scenario, base: Path) -> None:
    """Relative file settings are relative to the scenario file, as a reader expects (one
    that exists only relative to the working directory is left as it is)."""
    for section, name in PATH_FIELDS:
        node = scenario
        for part in section.split("."):
            node = getattr(node, part)
        value = getattr(node, name)
        if value and not Path(value).is_absolute():
            candidate = base / value
            if candidate.exists() or not Path(value).exists():
                setattr(node, name, str(candidate))


def variant_scenarios(scenario: Scenario, *, file: str | None = None) -> list[tuple[str, Scenario]]:
    """Expand `[[variants]]`: each is deep-merged over the base (without its own variants)."""
    base = scenario.model_dump(exclude={"variants"})
    out = []
    for v in scenario.variants:
        over = v.model_dump()
        name = over.pop("name")
        merged = deep_merge(base, over)
        merged["name"] = f"{scenario.name}/{name}"
        out.append((name, validate_doc(merged, file=f"{file}[variants.{name}]" if file else None)))
    return out


def _strip_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_strip_none(v) for v in obj]
    return obj


def dump_scenario(scenario: Scenario) -> str:
    """The fully resolved scenario as TOML (defaults filled in, SI units, no nulls)."""
    return tomli_w.dumps(_strip_none(scenario.model_dump(mode="json")))
