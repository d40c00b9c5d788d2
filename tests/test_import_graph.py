"""The package's import graph (every import statement, lazy ones inside functions too) has no
cycle between modules, and nothing under fedsim.algorithms imports fedsim.runtime (issue 16:
algorithms get what they need through contexts, the runtime imports the algorithms)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {
    "fedsim": ROOT / "fedsim",
    "fedsim.network": ROOT / "network",
    "fedsim.codecs": ROOT / "codecs",
}


def module_files() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for prefix, folder in LAYERS.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([prefix, *parts])
            if name.startswith("fedsim.network") and prefix == "fedsim":
                continue
            out[name] = path
    return out


def resolve(name: str, modules: set[str]) -> str | None:
    """The longest known module that `name` (a module or module.attribute) names."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    mods = set(files)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = mod if is_pkg else mod.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        pkg = pkg.rpartition(".")[0]
                    base = f"{pkg}.{base}" if base else pkg
                targets = [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                dep = resolve(t, mods)
                if dep is not None and dep != mod:
                    graph[mod].add(dep)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        color[m] = GREY
        stack.append(m)
        for d in sorted(graph[m]):
            if color[d] == GREY:
                return stack[stack.index(d) :] + [d]
            if color[d] == WHITE:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        color[m] = BLACK
        return None

    for m in sorted(graph):
        if color[m] == WHITE:
            found = visit(m)
            if found:
                return found
    return None


def test_graph_sees_known_edges():
    g = import_graph()
    assert "fedsim.algorithms.base" in g["fedsim.algorithms.fedavg"]
    assert "fedsim.codecs.wire" in g["fedsim.codecs.pipeline"]


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_algorithms_never_import_runtime():
    bad = sorted(
        f"{m} -> {d}"
        for m, deps in import_graph().items()
        if m.startswith("fedsim.algorithms")
        for d in deps
        if d.startswith("fedsim.runtime")
    )
    assert not bad, bad
