"""codecs/ may import only numpy, msgpack and the standard library (DESIGN.md section 1)."""

import ast
import sys
from pathlib import Path

CODECS = Path(__file__).resolve().parents[2] / "codecs"
ALLOWED = {"numpy", "msgpack"}


def test_codecs_import_only_numpy_msgpack_and_stdlib():
    offenders = []
    for path in sorted(CODECS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative import inside fedsim.codecs
                    continue
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in ALLOWED and top not in sys.stdlib_module_names or top == "pickle":
                    offenders.append(f"{path.name}: {name}")
    assert not offenders, offenders
    assert len(list(CODECS.glob("*.py"))) >= 8


def test_no_pickle_anywhere_in_codecs():
    for path in CODECS.rglob("*.py"):
        text = path.read_text()
        assert "pickle" not in text and "allow_pickle=True" not in text, path
