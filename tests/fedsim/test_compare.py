"""`fedsim compare` on two hand-written runs whose time-to-target is known by hand."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from types import SimpleNamespace

import matplotlib.image
import numpy as np
import pytest

from fedsim.errors import FedsimError
from fedsim.report.compare import (
    build_comparison,
    compare_command,
    compare_runs,
    render_compare_table,
)


def write_run(run_dir: Path, rows: list[dict], energy: bool = False) -> Path:
    """metrics.jsonl (+ summary.json) only: all that a comparison needs."""
    run_dir.mkdir(parents=True)
    for r in rows:
        r.setdefault("selected", 2)
        r.setdefault("aggregated", 2)
        r.setdefault("dropped", 0)
        if energy:
            r["energy_j"] = 10.0
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    accs = [r["test_accuracy"] for r in rows if "test_accuracy" in r]
    summary = {
        "scenario": run_dir.name,
        "rounds": len(rows),
        "final_accuracy": accs[-1],
        "best_accuracy": max(accs),
        "sim_time_total": rows[-1]["sim_time"],
        "bytes_up_total": sum(r["bytes_up"] for r in rows),
        "bytes_down_total": sum(r["bytes_down"] for r in rows),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def run_a(path: Path) -> Path:
    # Evaluated every round; 10 s and 100 + 1000 bytes per round.
    accs = [0.5, 0.7, 0.85, 0.9]
    rows = [
        {
            "round": i + 1,
            "sim_time": 10.0 * (i + 1),
            "bytes_up": 100,
            "bytes_down": 1000,
            "test_accuracy": a,
        }
        for i, a in enumerate(accs)
    ]
    return write_run(path, rows)


def run_b(path: Path) -> Path:
    # Evaluated every second round; 5 s per round; uplink bytes grow.
    accs = {2: 0.6, 4: 0.8, 6: 0.88}
    ups = [50, 50, 60, 60, 70, 70]
    rows = []
    for rnd in range(1, 7):
        row = {"round": rnd, "sim_time": 5.0 * rnd, "bytes_up": ups[rnd - 1], "bytes_down": 500}
        if rnd in accs:
            row["test_accuracy"] = accs[rnd]
        rows.append(row)
    return write_run(path, rows, energy=True)


@pytest.fixture()
def experiment(tmp_path: Path) -> Path:
    run_a(tmp_path / "exp" / "a")
    run_b(tmp_path / "exp" / "b")
    return tmp_path / "exp"


def test_default_target_and_time_to_target(experiment: Path) -> None:
    comp = build_comparison([experiment / "a", experiment / "b"])
    # 0.95 x the lowest best accuracy (b: 0.88).
    assert comp.target == pytest.approx(0.95 * 0.88)
    assert "0.95 x the lowest best accuracy" in comp.target_note and "of b" in comp.target_note
    a, b = comp.rows
    # a first reaches 0.836 at round 3 (0.85): 30 s, 3 x 1100 bytes.
    assert (a["rounds_to_target"], a["time_to_target"], a["bytes_to_target"]) == (3, 30.0, 3300)
    # b: round 4 has 0.80 < 0.836; round 6 (0.88): 30 s, 360 up + 3000 down.
    assert (b["rounds_to_target"], b["time_to_target"], b["bytes_to_target"]) == (6, 30.0, 3360)
    assert a["final_accuracy"] == 0.9 and b["best_accuracy"] == 0.88
    assert (a["bytes_up_total"], a["bytes_down_total"], a["sim_time_total"]) == (400, 4000, 40.0)
    assert b["energy_j_total"] == pytest.approx(60.0) and a["energy_j_total"] is None


def test_given_target_that_a_run_never_reaches(experiment: Path) -> None:
    a, b = build_comparison([experiment / "a", experiment / "b"], target=0.9).rows
    assert (a["rounds_to_target"], a["time_to_target"], a["bytes_to_target"]) == (4, 40.0, 4400)
    assert (b["rounds_to_target"], b["time_to_target"], b["bytes_to_target"]) == (None, None, None)
    assert "–" in render_compare_table([a, b], "table")
    with pytest.raises(FedsimError, match="between 0 and 1"):
        build_comparison([experiment / "a"], target=85.0)


def test_experiment_folder_expands_into_variants(experiment: Path) -> None:
    md = compare_runs([experiment], experiment / "compare", None)
    assert [r["run"] for r in json.loads((md.parent / "compare.json").read_text())["rows"]] == [
        "a",
        "b",
    ]
    text = md.read_text()
    assert "target accuracy 83.60%" in text
    for name in ("accuracy_vs_time", "accuracy_vs_bytes", "accuracy_vs_round", "energy"):
        png = md.parent / f"{name}.png"
        assert f"]({name}.png)" in text
        img = matplotlib.image.imread(png)
        assert float(np.var(img[..., :3].mean(axis=2))) > 2e-3, name
    # The compare/ folder written inside the experiment is not mistaken for a variant.
    assert len(build_comparison([experiment]).rows) == 2


def test_clashing_names_get_their_parent(tmp_path: Path) -> None:
    rows = build_comparison([run_a(tmp_path / "x" / "run"), run_b(tmp_path / "y" / "run")]).rows
    assert [r["run"] for r in rows] == ["x/run", "y/run"]


def test_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(FedsimError, match="no metrics.jsonl"):
        build_comparison([tmp_path])


def test_compare_command(experiment: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = SimpleNamespace(run_dirs=[str(experiment)], out=None, target=None, format="json")
    assert compare_command(args) == 0
    out, err = capsys.readouterr()
    assert (experiment / "compare" / "compare.md").is_file()
    # stdout is only the rows; where the files went and the target go to stderr.
    rows = json.loads(out)
    assert [r["rounds_to_target"] for r in rows] == [3, 6]
    assert str(experiment / "compare" / "compare.md") in err and "83.60%" in err
    got = [
        r["bytes_to_target"] for r in csv.DictReader(io.StringIO(render_compare_table(rows, "csv")))
    ]
    assert got == ["3300", "3360"]
    table = render_compare_table(rows, "table")
    assert "target accuracy 83.60%" in table and "rounds to target" in table and "3.3 kB" in table
