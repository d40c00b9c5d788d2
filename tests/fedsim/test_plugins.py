"""Bring your own: an algorithm, a model and a dataset from a package outside fedsim, named by
import path or registered through entry points; the same hash in process and in workers."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tomli_w

import fedsim
from fedsim.cli import main

PACKAGE = {
    "__init__.py": "",
    "methods.py": '''
        import numpy as np
        from pydantic import Field

        from fedsim.algorithms.base import Options, weighted_mean
        from fedsim.algorithms.fedavg import FedAvg


        class DampedOptions(Options):
            server_lr: float = Field(0.5, gt=0, description="step on the mean update")


        class DampedAvg(FedAvg):
            """FedAvg with a server step size."""

            name = "damped"
            summary = "FedAvg with a server learning rate"
            Options = DampedOptions

            def aggregate(self, rnd, global_state, results):
                if not results:
                    return global_state
                delta = weighted_mean(results)
                step = self.options.server_lr
                return {k: (v + step * delta[k]).astype(np.float32) for k, v in global_state.items()}
        ''',
    "nets.py": '''
        import math

        from torch import nn


        def build(input_shape, num_classes, hidden=16):
            """A one-hidden-layer net."""
            d = math.prod(input_shape)
            return nn.Sequential(
                nn.Flatten(), nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
            )
        ''',
    "data.py": '''
        import numpy as np

        from fedsim.data import Dataset


        def load(seed=0, n=240, centers=3):
            """Gaussian blobs in 4 dimensions."""
            rng = np.random.default_rng(seed)
            means = rng.normal(0, 3, (centers, 4))
            y = rng.integers(0, centers, n)
            x = (means[y] + rng.normal(0, 1, (n, 4))).astype(np.float32)
            cut = n * 3 // 4
            return Dataset("blobs", x[:cut], y[:cut].astype(np.int64), x[cut:],
                           y[cut:].astype(np.int64), centers, (4,))
        ''',
}

ENTRY_POINTS = """\
[fedsim.algorithms]
damped = byopkg.methods:DampedAvg

[fedsim.models]
tinynet = byopkg.nets:build

[fedsim.datasets]
blobs = byopkg.data:load
"""


def scenario(algorithm: str, model: str, dataset: str) -> dict:
    return {
        "name": "byo",
        "rounds": 2,
        "data": {"dataset": dataset, "options": {"n": 200}},
        "model": {"name": model, "args": {"hidden": 8}},
        "algorithm": {"name": algorithm, "server_lr": 0.7},
        "clients": {"count": 4, "per_round": 2},
    }


BY_PATH = scenario("byopkg.methods:DampedAvg", "byopkg.nets:build", "byopkg.data:load")
BY_ENTRY_POINT = scenario("damped", "tinynet", "blobs")


@pytest.fixture
def byopkg(tmp_path, monkeypatch):
    """The package in tmp_path/site (on sys.path and PYTHONPATH), with a dist-info that
    registers its entry points."""
    site = tmp_path / "site"
    pkg = site / "byopkg"
    pkg.mkdir(parents=True)
    for name, text in PACKAGE.items():
        (pkg / name).write_text(textwrap.dedent(text))
    info = site / "byopkg-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: byopkg\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    monkeypatch.setenv("PYTHONPATH", path)
    yield site
    for mod in [m for m in sys.modules if m == "byopkg" or m.startswith("byopkg.")]:
        del sys.modules[mod]


def write(tmp_path: Path, doc: dict, name: str = "byo.toml") -> Path:
    path = tmp_path / name
    path.write_text(tomli_w.dumps(doc))
    return path


def test_import_paths_and_entry_points_run_in_process(byopkg, tmp_path):
    by_path = fedsim.run(write(tmp_path, BY_PATH))
    by_ep = fedsim.run(write(tmp_path, BY_ENTRY_POINT, "ep.toml"))
    assert by_path.summary["model_sha256"] == by_ep.summary["model_sha256"]
    assert by_path.summary["model_params"] == 4 * 8 + 8 + 8 * 3 + 3  # the user's net
    assert by_path.summary["final_accuracy"] is not None
    # the user's algorithm really ran: FedAvg (server_lr 1) gives another model
    fedavg = fedsim.run(write(tmp_path, {**BY_PATH, "algorithm": {"name": "fedavg"}}, "f.toml"))
    assert fedavg.summary["model_sha256"] != by_path.summary["model_sha256"]


def test_list_shows_origins(byopkg, capsys):
    assert main(["list", "algorithms", "models", "datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("damped", "tinynet", "blobs"):
        assert name in out
    assert "entry point: byopkg 0.3" in out and "builtin" in out and "import path" in out


@pytest.mark.parametrize(
    ("field", "value", "expect"),
    [
        ("algorithm", {"name": "nopkg.methods:X"}, "algorithm.name: cannot import 'nopkg.methods'"),
        (
            "algorithm",
            {"name": "byopkg.methods:Nothing"},
            "algorithm.name: module 'byopkg.methods' has no 'Nothing'",
        ),
        (
            "algorithm",
            {"name": "byopkg.nets:build"},
            "algorithm.name: 'byopkg.nets:build' is not a subclass",
        ),
        ("model", {"name": "nopkg:build"}, "model.name: cannot import 'nopkg'"),
        ("data", {"dataset": "nopkg.data:load"}, "data.dataset: cannot import 'nopkg.data'"),
        ("algorithm", {"name": "byopkg.methods:DampedAvg", "server_lr": -1}, "algorithm.server_lr"),
    ],
)
def test_bad_names_are_one_line(byopkg, tmp_path, capsys, field, value, expect):
    path = write(tmp_path, {**BY_PATH, field: value})
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expect in err, err


@pytest.mark.multiprocess
def test_same_hash_with_ipc_workers(byopkg, tmp_path):
    path = write(tmp_path, BY_PATH)
    inproc = fedsim.run(path)
    for name, doc in (("path", BY_PATH), ("ep", BY_ENTRY_POINT)):
        out = tmp_path / f"ipc-{name}"
        cmd = [sys.executable, "-m", "fedsim", "run", str(write(tmp_path, doc, f"{name}.toml"))]
        cmd += ["--transport", "ipc", "--workers", "2", "--quiet", "--out", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        summary = json.loads((out / "summary.json").read_text())
        assert summary["model_sha256"] == inproc.summary["model_sha256"], name
        events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
        # trained in worker processes (a fast run may finish before the second one joins)
        assert any(e["event"] == "worker_joined" for e in events)


@pytest.mark.multiprocess
@pytest.mark.slow
def test_same_hash_on_ray(byopkg, tmp_path):
    pytest.importorskip("ray", reason='Ray not installed (pip install "fedsim[ray]")')
    inproc = fedsim.run(write(tmp_path, BY_PATH))
    out = tmp_path / "ray"
    cmd = [sys.executable, "-m", "fedsim", "run", str(write(tmp_path, BY_ENTRY_POINT, "ep.toml"))]
    cmd += ["--executor", "ray", "--workers", "2", "--quiet", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=420, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model_sha256"] == inproc.summary["model_sha256"]
