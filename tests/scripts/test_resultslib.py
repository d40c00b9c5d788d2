"""scripts/resultslib.py: the results scripts' runner and page formatters."""

import importlib.util
import json
import math
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("resultslib", ROOT / "scripts" / "resultslib.py")
lib = importlib.util.module_from_spec(_spec)
sys.modules["resultslib"] = lib  # as when a script imports it (dataclasses look it up here)
_spec.loader.exec_module(lib)

PY = sys.executable


def test_mean_std_is_the_population_std():
    m, s = lib.mean_std([1, 2, 3])
    assert m == 2.0
    assert s == pytest.approx(math.sqrt(2 / 3))
    assert lib.mean_std(x for x in (4.0,)) == (4.0, 0.0)  # any iterable, one value: std 0


def test_pm_scales_and_rounds():
    assert lib.pm([0.90, 0.92, 0.94]) == "92.0 ± 1.6"  # fractions shown in percent
    assert lib.pm([1.0, 2.0, 3.0], 1.0, 2) == "2.00 ± 0.82"
    assert lib.pm([0.5, 0.5], scale=1.0, digits=3) == "0.500 ± 0.000"


def test_verdict_words():
    assert lib.verdict(True) == "holds"
    assert lib.verdict(True, False) == "holds"
    assert lib.verdict(False, True) == "holds partly"
    assert lib.verdict(False) == "does not hold here"


def test_fedsim_run_command_and_its_layout(tmp_path):
    cmd = lib.fedsim_run("scenarios/x.toml", "v1", (0, 1, 2), tmp_path / "out", "--set", "a=1")
    assert cmd[:4] == [PY, "-m", "fedsim", "run"]
    assert cmd[4:] == [
        *("scenarios/x.toml", "--variant", "v1", "--seeds", "0,1,2"),
        *("--out", str(tmp_path / "out"), "--force", "--quiet", "--set", "a=1"),
    ]
    dirs = lib.variant_seed_dirs(tmp_path / "out", "v1", (0, 1))
    assert dirs == [tmp_path / "out" / "v1" / "seed-0", tmp_path / "out" / "v1" / "seed-1"]
    assert not lib.finished(dirs)
    for d in dirs:
        d.mkdir(parents=True)
    (dirs[0] / "summary.json").write_text("{}")
    assert not lib.finished(dirs)
    (dirs[1] / "summary.json").write_text("{}")
    assert lib.finished(dirs)


def test_read_json(tmp_path):
    assert lib.read_json(tmp_path / "none.json") is None
    (tmp_path / "t.json").write_text(json.dumps({"wall_s": 1.5}))
    assert lib.read_json(tmp_path / "t.json") == {"wall_s": 1.5}


def write(path: Path) -> list[str]:
    """A child that checks its thread budget, then writes `path` and prints a line."""
    code = (
        "import os, sys; "
        "assert os.environ['OMP_NUM_THREADS'] == '1' == os.environ['MKL_NUM_THREADS']; "
        f"open({str(path)!r}, 'w').write('x'); print('child', 'says hi')"
    )
    return [PY, "-c", code]


def test_run_side_by_side_runs_every_command_and_measures(tmp_path, capfd):
    commands = {f"job{i}": write(tmp_path / f"{i}.txt") for i in range(3)}
    ran = lib.run_side_by_side(commands, jobs=2, cwd=tmp_path)
    assert all((tmp_path / f"{i}.txt").read_text() == "x" for i in range(3))
    assert list(ran.wall_s) == ["job0", "job1", "job2"]  # the order given
    assert all(0 < t <= ran.total_s for t in ran.wall_s.values())
    assert ran.cpu_s > 0  # three Python interpreters started
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", ran.date)
    out = capfd.readouterr().out
    assert len(re.findall(r"^child says hi$", out, re.M)) == 3
    assert out.count("+ -c import os") == 3  # each command line, without the interpreter
    assert re.search(r"^  job1: \d+ s$", out, re.M)


def test_run_side_by_side_quiet_drops_the_childrens_output(tmp_path, capfd):
    lib.run_side_by_side({"a": write(tmp_path / "a.txt")}, jobs=1, cwd=tmp_path, quiet=True)
    assert (tmp_path / "a.txt").exists()
    assert not re.search(r"^child says hi$", capfd.readouterr().out, re.M)


def test_run_side_by_side_stops_at_a_failure(tmp_path):
    commands = {
        "bad": [PY, "-c", "raise SystemExit(3)"],
        "later": write(tmp_path / "later.txt"),
    }
    with pytest.raises(SystemExit, match=r"^bad: .* exited with 3$"):
        lib.run_side_by_side(commands, jobs=1, cwd=tmp_path)
    assert not (tmp_path / "later.txt").exists()  # one at a time: never started


def test_run_side_by_side_with_nothing_to_run(tmp_path):
    ran = lib.run_side_by_side({}, jobs=2, cwd=tmp_path)
    assert ran.wall_s == {} and ran.total_s >= 0 and ran.cpu_s == 0


def test_pyplot_makes_the_folder_and_save_figure_writes_and_frees(tmp_path):
    plt = lib.pyplot(tmp_path / "img")
    assert (tmp_path / "img").is_dir()
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    lib.save_figure(fig, tmp_path / "img" / "a.png", 50)
    assert (tmp_path / "img" / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert fig.number not in plt.get_fignums()  # closed
