"""DESIGN.md §1: codecs import numpy + msgpack only; network imports no torch."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STDLIB = set(sys.stdlib_module_names)


def imported_roots(folder: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for n in names:
                out.setdefault(n.split(".")[0] if not n.startswith("fedsim.") else n, set()).add(
                    path.name
                )
    return out


def test_codecs_import_only_numpy_and_msgpack():
    roots = imported_roots(ROOT / "codecs")
    bad = {
        m: files
        for m, files in roots.items()
        if m not in STDLIB and m not in {"numpy", "msgpack"} and not m.startswith("fedsim.codecs")
    }
    assert not bad, f"codecs/ imports {bad}"


def test_network_imports_no_torch_and_no_fl_layer():
    roots = imported_roots(ROOT / "network")
    allowed = {"numpy", "msgpack", "simpy", "zmq"}
    bad = {
        m: files
        for m, files in roots.items()
        if m not in STDLIB
        and m not in allowed
        and not (m.startswith("fedsim.network") or m.startswith("fedsim.codecs"))
    }
    assert not bad, f"network/ imports {bad}"


def _loaded_after_importing(pkg: str) -> set[str]:
    code = (
        "import sys, importlib, pkgutil\n"
        f"pkg = importlib.import_module({pkg!r})\n"
        "for m in pkgutil.iter_modules(pkg.__path__):\n"
        "    importlib.import_module(pkg.__name__ + '.' + m.name)\n"
        "print(' '.join(sorted({k.split('.')[0] for k in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return set(out.stdout.split())


def test_importing_codecs_loads_no_torch_simpy_zmq():
    loaded = _loaded_after_importing("fedsim.codecs")
    assert not loaded & {"torch", "simpy", "zmq", "pydantic"}


def test_importing_network_loads_no_torch():
    loaded = _loaded_after_importing("fedsim.network")
    assert not loaded & {"torch", "torchvision", "pydantic"}


def test_network_holds_the_model_only():
    """Issue 16 item 7: no file writer, no process runner or command line in network/.

    Run outputs (JSONL) live in fedsim.runtime.jsonl, the real-TCP harness in
    benchmarks/tcp_harness.py; network/ may read trace files, never write.
    """
    roots = imported_roots(ROOT / "network")
    bad = [f"{f}: imports {m}" for m in ("subprocess", "argparse") for f in roots.get(m, ())]
    for path in (ROOT / "network").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "open":
                mode = node.args[1] if len(node.args) > 1 else None
                mode = next((k.value for k in node.keywords if k.arg == "mode"), mode)
                text = mode.value if isinstance(mode, ast.Constant) else "r"
                if not isinstance(mode, (ast.Constant, type(None))) or set(text) & set("wax+"):
                    bad.append(f"{path.name}:{node.lineno}: open() for writing")
            elif isinstance(node, ast.Attribute) and node.attr in {"write_text", "write_bytes"}:
                bad.append(f"{path.name}:{node.lineno}: {node.attr}")
    assert not bad, bad
