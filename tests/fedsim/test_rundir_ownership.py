"""Output directories are owned (issue 17): one run per --out at a time, --force removes
what an earlier run left, variants stay inside --out, compare never overwrites silently."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fedsim.cli import main
from fedsim.runtime.outputs import clean_run_dir
from fedsim.runtime.rundir_lock import LOCK_NAME, RunDirBusy, RunDirLock

SCENARIO = """
name = "tiny"
rounds = 1
[data]
dataset = "synthetic"
[data.synthetic]
shape = [1, 4, 4]
train_size = 80
test_size = 20
[model]
name = "mlp"
args = {hidden = [8]}
[clients]
count = 2
per_round = 2
"""


@pytest.fixture()
def scen(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(SCENARIO)
    return path


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_second_run_into_a_held_directory_exits_2_naming_the_holder(scen, tmp_path, capsys):
    out = tmp_path / "out"
    with RunDirLock(out):
        assert main(["run", str(scen), "--out", str(out), "--quiet"]) == 2
        line = one_line(capsys.readouterr().err)
        assert str(out) in line and f"pid {os.getpid()}" in line
        assert f"host {socket.gethostname()}" in line
        assert not (out / "metrics.jsonl").exists()
        # --force and --resume do not take a held directory either
        assert main(["run", str(scen), "--out", str(out), "--quiet", "--force"]) == 2
        assert main(["run", str(scen), "--out", str(out), "--quiet", "--resume"]) == 2
        capsys.readouterr()
    # released: the lock file is gone and a run goes ahead
    assert not (out / LOCK_NAME).exists()
    assert main(["run", str(scen), "--out", str(out), "--quiet"]) == 0
    assert (out / "summary.json").is_file() and not (out / LOCK_NAME).exists()


HOLDER = textwrap.dedent(
    """
    import sys, time
    from fedsim.runtime.rundir_lock import RunDirLock
    lock = RunDirLock(sys.argv[1]).acquire()
    print("held", flush=True)
    time.sleep(120)
    """
)


def test_lock_across_processes_and_freed_when_the_holder_is_killed(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RunDirBusy, match=f"pid {proc.pid} on host"):
            RunDirLock(out).acquire()
        os.kill(proc.pid, signal.SIGKILL)  # the kernel drops a flock with its holder
        proc.wait(timeout=30)
        with RunDirLock(out):
            assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_release_then_acquire_never_shares(tmp_path):
    """A lock file unlinked by its releaser is never locked by two holders at once."""
    out = tmp_path / "out"
    for _ in range(50):
        a = RunDirLock(out).acquire()
        a.release()
        b = RunDirLock(out).acquire()
        with pytest.raises(RunDirBusy):
            RunDirLock(out).acquire()
        b.release()


def test_refused_run_leaves_no_empty_folder(tmp_path):
    out = tmp_path / "new"
    RunDirLock(out).acquire().release()
    assert not out.exists()


def _leftovers(out: Path) -> None:
    (out / "plots").mkdir(parents=True)
    (out / "plots" / "loss.png").write_bytes(b"png")
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "round-000007.ckpt").write_bytes(b"old")
    for name in ("report.md", "report.html", "summary.json", "events.jsonl", "comparison.md"):
        (out / name).write_text("old")
    (out / "metrics.jsonl").write_text('{"round": 7}\n')
    (out / "summary.json.tmp").write_text("half")
    (out / "oldvariant").mkdir()
    (out / "oldvariant" / "metrics.jsonl").write_text('{"round": 7}\n')
    (out / "oldvariant" / "events.jsonl").write_text("")
    (out / "myexp").mkdir()  # the user's experiment folder, not a run: stays
    (out / "myexp" / "scenario.toml").write_text("rounds = 1\n")
    (out / "notes.txt").write_text("mine")  # not a fedsim output: stays
    (out / "data").mkdir()  # a user's folder without run files: stays
    (out / "data" / "x.csv").write_text("1")


def test_force_removes_what_an_earlier_run_left(scen, tmp_path, capsys):
    out = tmp_path / "out"
    _leftovers(out)
    assert main(["run", str(scen), "--out", str(out), "--quiet"]) == 2
    assert "not empty" in one_line(capsys.readouterr().err)
    assert (out / "report.md").exists()  # refused: nothing touched

    assert main(["run", str(scen), "--out", str(out), "--quiet", "--force"]) == 0
    left = sorted(p.name for p in out.iterdir())
    for gone in ("plots", "checkpoints", "report.md", "report.html", "comparison.md"):
        assert gone not in left
    assert "oldvariant" not in left and "summary.json.tmp" not in left
    assert (out / "notes.txt").read_text() == "mine" and (out / "data" / "x.csv").exists()
    assert (out / "myexp" / "scenario.toml").exists()
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1]


def test_force_never_removes_the_scenario_being_run(tmp_path, capsys):
    out = tmp_path / "exp"
    out.mkdir()
    scen = out / "scenario.toml"
    scen.write_text(SCENARIO)
    assert main(["run", str(scen), "--out", str(out), "--quiet", "--force"]) == 2
    assert "scenario.toml" in one_line(capsys.readouterr().err)
    assert scen.read_text() == SCENARIO


def test_clean_run_dir_lists_what_it_removed(tmp_path):
    _leftovers(tmp_path)
    removed = {p.name for p in clean_run_dir(tmp_path)}
    assert removed == {
        "plots",
        "checkpoints",
        "report.md",
        "report.html",
        "summary.json",
        "summary.json.tmp",
        "events.jsonl",
        "comparison.md",
        "metrics.jsonl",
        "oldvariant",
    }


def test_variants_write_only_inside_out(scen, tmp_path):
    scen.write_text(SCENARIO + '[[variants]]\nname = "a"\n[[variants]]\nname = "b.2"\n')
    out = tmp_path / "exp" / "out"
    before = {p for p in tmp_path.rglob("*")}
    assert main(["run", str(scen), "--out", str(out), "--quiet"]) == 0
    new = {p for p in tmp_path.rglob("*")} - before
    assert all(p == out.parent or out in p.parents or p == out for p in new)
    assert (out / "a" / "summary.json").is_file() and (out / "b.2" / "summary.json").is_file()


def test_sweep_names_are_safe_folder_names(scen, tmp_path):
    out = tmp_path / "sw"
    argv = ["run", str(scen), "--out", str(out), "--quiet", "--sweep", "codec.uplink=fp16,q8"]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["uplink-fp16", "uplink-q8"]


def _fake_run(path: Path, acc: float) -> Path:
    path.mkdir(parents=True)
    rows = [{"round": r, "sim_time": 10.0 * r, "test_accuracy": acc * r / 3} for r in (1, 2, 3)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_compare_never_overwrites_without_force(tmp_path, capsys):
    a, b = _fake_run(tmp_path / "a", 0.9), _fake_run(tmp_path / "b", 0.8)
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    first = (out / "compare.json").read_text()
    capsys.readouterr()
    assert main(["compare", str(a), "--out", str(out)]) == 2
    line = one_line(capsys.readouterr().err)
    assert str(out) in line and "--force" in line
    assert (out / "compare.json").read_text() == first
    (out / "energy.png").write_bytes(b"stale figure")  # not drawn by the new comparison
    assert main(["compare", str(a), "--out", str(out), "--force"]) == 0
    assert (out / "compare.json").read_text() != first and not (out / "energy.png").exists()


def test_compare_default_folder_is_protected_too(tmp_path, capsys):
    a, b = _fake_run(tmp_path / "a", 0.9), _fake_run(tmp_path / "b", 0.8)
    assert main(["compare", str(a), str(b)]) == 0
    assert (tmp_path / "compare" / "compare.md").is_file()
    capsys.readouterr()
    assert main(["compare", str(b), str(a)]) == 2
    assert "compare" in one_line(capsys.readouterr().err)
