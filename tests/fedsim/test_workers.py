"""Multi-process runtime: identical results across transports and worker counts, lost
workers re-run elsewhere without changing the experiment, CURVE keeps strangers out."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from fedsim.runtime.jsonl import read_jsonl

pytestmark = pytest.mark.multiprocess

SHORT = """
name = "short"
seed = 5
rounds = 2
[data]
dataset = "mnist5k"
partition = "dirichlet"
alpha = 0.5
min_size = 20
[model]
name = "cnn"
args = { channels = [8, 16], hidden = 64 }
[clients]
count = 8
per_round = 4
[train]
local_steps = 4
batch_size = 20
[runtime]
heartbeat_interval = 0.2
worker_timeout = 5.0
"""


def strip_wall(rows):
    return [{k: v for k, v in r.items() if not k.startswith("wall_")} for r in rows]


def fedsim_run(tmp: Path, name: str, *extra: str, env=None, text: str = SHORT, timeout=300) -> Path:
    scen = tmp / "short.toml"
    scen.write_text(text)
    out = tmp / name
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedsim",
            "run",
            str(scen),
            "--out",
            str(out),
            "--quiet",
            "--force",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr
    return out


def same_run(a: Path, b: Path) -> None:
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert sa["model_sha256"] == sb["model_sha256"]
    for f in ("metrics.jsonl", "traffic.jsonl"):
        assert strip_wall(read_jsonl(a / f)) == strip_wall(read_jsonl(b / f)), f


def events(d: Path) -> list[dict]:
    return list(read_jsonl(d / "events.jsonl"))


def assert_no_process_left(d: Path) -> None:
    for e in events(d):
        if e["event"] == "worker_spawned":
            with pytest.raises(ProcessLookupError):
                os.kill(e["pid"], 0)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return fedsim_run(tmp_path_factory.mktemp("ref"), "inproc")


@pytest.mark.parametrize("transport,workers", [("ipc", 1), ("ipc", 2), ("tcp", 2)])
def test_identical_across_transports(reference, tmp_path, transport, workers):
    out = fedsim_run(
        tmp_path, f"{transport}{workers}", "--transport", transport, "--workers", str(workers)
    )
    same_run(reference, out)
    joined = [e for e in events(out) if e["event"] == "worker_joined"]
    assert len(joined) == workers
    assert_no_process_left(out)


def test_sigkilled_worker_changes_nothing(reference, tmp_path):
    # worker 0 SIGKILLs itself on its 2nd task, before answering: a real mid-round loss
    out = fedsim_run(
        tmp_path, "killed", "--transport", "tcp", "--workers", "2", env={"FEDSIM_FAULT": "kill:0:2"}
    )
    same_run(reference, out)
    kinds = [e["event"] for e in events(out)]
    assert "worker_lost" in kinds and "redispatch" in kinds
    assert_no_process_left(out)


def test_corrupt_result_is_redispatched(reference, tmp_path):
    out = fedsim_run(
        tmp_path,
        "corrupt",
        "--transport",
        "ipc",
        "--workers",
        "2",
        env={"FEDSIM_FAULT": "corrupt:1:1"},
    )
    same_run(reference, out)
    ev = events(out)
    assert any(e["event"] == "corrupt_message" for e in ev)
    assert any(e["event"] == "redispatch" and e["reason"] == "corrupt_message" for e in ev)


def test_no_worker_left_stops_with_clear_error(tmp_path):
    scen = tmp_path / "s.toml"
    scen.write_text(
        SHORT.replace("worker_timeout = 5.0", "worker_timeout = 2.0\nworker_wait = 2.0")
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedsim",
            "run",
            str(scen),
            "--out",
            str(tmp_path / "o"),
            "--quiet",
            "--transport",
            "tcp",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FEDSIM_FAULT": "kill:0:1"},
    )
    assert proc.returncode == 2
    assert "no worker left" in proc.stderr and "Traceback" not in proc.stderr
    assert_no_process_left(tmp_path / "o")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_curve_rejects_peer_without_keys(tmp_path):
    keys = tmp_path / "keys"
    subprocess.run(
        [sys.executable, "-m", "fedsim", "keys", "generate", str(keys)],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    text = SHORT.replace(
        "[runtime]", f'[runtime]\ncurve_keys = "{keys}/server"\nendpoint = "tcp://127.0.0.1:{port}"'
    )
    scen = tmp_path / "s.toml"
    scen.write_text(text)
    out = tmp_path / "curve"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fedsim",
            "run",
            str(scen),
            "--out",
            str(out),
            "--quiet",
            "--transport",
            "tcp",
            "--workers",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ctx = zmq.Context()
    rogue = ctx.socket(zmq.DEALER)
    rogue.setsockopt(zmq.LINGER, 0)
    rogue.connect(f"tcp://127.0.0.1:{port}")
    from fedsim.runtime import protocol as P

    got = []
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            rogue.send_multipart([P.pack_envelope(P.HELLO, pid=1, host="rogue")], flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            pass
        if rogue.poll(200):
            got.append(rogue.recv_multipart())
    proc.wait(timeout=120)
    rogue.close()
    ctx.term()
    assert proc.returncode == 0, proc.stderr.read()
    assert got == []
    joined = [e for e in events(out) if e["event"] == "worker_joined"]
    assert len(joined) == 1 and joined[0]["host"] != "rogue"
    refused = [e for e in events(out) if e["event"] == "peer_refused"]
    assert refused and "does not use CURVE" in refused[0]["reason"]
