"""A run killed with SIGKILL after a checkpoint resumes into exactly the uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from test_workers import SHORT, same_run

from fedsim.runtime.jsonl import read_jsonl

pytestmark = pytest.mark.slow

TEXT = SHORT.replace("rounds = 2", "rounds = 5").replace(
    "[runtime]", "[runtime]\ncheckpoint_every = 1"
)


def cmd(scen, out, *extra):
    return [sys.executable, "-m", "fedsim", "run", str(scen), "--out", str(out), "--quiet", *extra]


ASYNC = TEXT.replace(
    "[runtime]", '[server]\nmode = "async"\nconcurrency = 4\nbuffer_size = 2\n[runtime]'
)


@pytest.mark.parametrize("transport", ["inproc", "ipc", "async-inproc", "async-ipc"])
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, transport):
    """FedBuff too: its checkpoint holds the in-flight clients' results and the session's
    call journal, replayed into a fresh session on resume."""
    scen = tmp_path / "s.toml"
    scen.write_text(ASYNC if transport.startswith("async") else TEXT)
    extra = [] if transport.endswith("inproc") else ["--transport", "ipc", "--workers", "2"]
    ref = tmp_path / "ref"
    subprocess.run(cmd(scen, ref, *extra), check=True, capture_output=True, timeout=600)

    out = tmp_path / "killed"
    proc = subprocess.Popen(cmd(scen, out, *extra), start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ckpts = (
            list((out / "checkpoints").glob("round-*.ckpt"))
            if (out / "checkpoints").exists()
            else []
        )
        if any(p.name >= "round-000002.ckpt" for p in ckpts):
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the coordinator and its workers, no goodbye
    proc.wait()
    assert not (out / "summary.json").exists()

    resumed = subprocess.run(
        cmd(scen, out, "--resume", *extra), capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    same_run(ref, out)
    rounds = [m["round"] for m in read_jsonl(out / "metrics.jsonl")]
    assert rounds == [1, 2, 3, 4, 5]  # no duplicated or torn row
    assert json.loads((out / "summary.json").read_text())["resumed"] is True
    assert any(e["event"] == "resume" for e in read_jsonl(out / "events.jsonl"))


def test_resume_with_other_scenario_is_refused(tmp_path, capsys):
    from fedsim.cli import main

    scen = tmp_path / "s.toml"
    scen.write_text(TEXT.replace("rounds = 5", "rounds = 1"))
    out = tmp_path / "o"
    assert main(["run", str(scen), "--out", str(out), "--quiet"]) == 0
    assert (
        main(
            [
                "run",
                str(scen),
                "--out",
                str(out),
                "--quiet",
                "--resume",
                "--set",
                "seed=9",
                "--rounds",
                "1",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "different scenario" in err
    assert "seed: 5 there, 9 now" in err  # the keys that differ are named
    assert len(err.strip().splitlines()) == 1
