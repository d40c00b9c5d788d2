"""The scenarios shipped with fedsim: found by name, listed, copied out to edit.

They live in the checkout's top-level ``scenarios/`` folder and install as package data of
``fedsim.scenarios`` (pyproject.toml maps one to the other), so ``fedsim run quickstart``
works from a wheel as well as from a clone.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import tomllib

from fedsim.errors import ScenarioError


def shipped_dir() -> Path:
    """The folder holding the shipped ``*.toml`` files (installed or in the checkout)."""
    spec = importlib.util.find_spec("fedsim.scenarios")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            if any(Path(loc).glob("*.toml")):
                return Path(loc)
    return Path(__file__).resolve().parents[2] / "scenarios"  # a checkout not installed


def shipped_scenarios() -> dict[str, Path]:
    """name (file stem) -> path, sorted by name."""
    folder = shipped_dir()
    return (
        {p.stem: p for p in sorted(folder.glob("*.toml"), key=lambda p: p.stem)}
        if folder.is_dir()
        else {}
    )


def resolve_scenario_path(arg: str | Path) -> Path:
    """A scenario argument as a path: an existing file, else a shipped scenario's name.

    Only a bare name (no folder, no ``.toml``) that is not a file here is looked up among
    the shipped scenarios, so a local file always wins over a shipped one (a folder of
    that name does not: ``fedsim run quickstart`` works beside a runs/quickstart folder).
    """
    path = Path(arg)
    if path.is_file() or isinstance(arg, Path):
        return path
    text = str(arg)
    if "/" in text or "\\" in text or text.endswith(".toml"):
        return path
    found = shipped_scenarios().get(text)
    if found is None:
        names = ", ".join(shipped_scenarios()) or "none installed"
        raise ScenarioError(
            f"no such file, and not a shipped scenario (shipped: {names})", file=text
        )
    return found


def describe_shipped() -> list[tuple[str, str]]:
    """(name, description) of each shipped scenario, for ``fedsim list scenarios``."""
    rows = []
    for name, path in shipped_scenarios().items():
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            doc = {}
        rows.append((name, str(doc.get("description", ""))))
    return rows


def copy_shipped(dest: str | Path, *, force: bool = False) -> list[Path]:
    """Copy every shipped scenario into ``dest`` (created); existing files need ``force``."""
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise ScenarioError("exists and is not a directory", file=str(dest))
    sources = shipped_scenarios()
    targets = [dest / p.name for p in sources.values()]
    clash = [t for t in targets if t.exists()]
    if clash and not force:
        raise ScenarioError(
            f"{len(clash)} file(s) exist, e.g. {clash[0].name} (pass --force to overwrite them)",
            file=str(dest),
        )
    dest.mkdir(parents=True, exist_ok=True)
    for src, dst in zip(sources.values(), targets, strict=True):
        shutil.copyfile(src, dst)
    return targets
