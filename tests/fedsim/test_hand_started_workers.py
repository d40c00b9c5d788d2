"""Workers started by hand: the CURVE key split (a worker folder without any server secret
joins; a stranger's pair, a revoked one and a foreign server key are refused and logged), the
version check, a worker that cannot set up, and what a SIGKILLed coordinator leaves behind."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq
from fedsim.network import curve
from test_workers import SHORT, _free_port, events

from fedsim.runtime import protocol as P

pytestmark = pytest.mark.multiprocess

FEDSIM = [sys.executable, "-m", "fedsim"]


def start_coordinator(tmp: Path, port: int, runtime: str = "", env=None, text=SHORT):
    scen = tmp / "s.toml"
    scen.write_text(
        text.replace("[runtime]", f'[runtime]\nendpoint = "tcp://127.0.0.1:{port}"\n{runtime}')
    )
    out = tmp / "run"
    proc = subprocess.Popen(
        [*FEDSIM, "run", str(scen), "--out", str(out), "--quiet"]
        + ["--transport", "tcp", "--workers", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    wait_for_event(out, "listen", proc)
    return proc, out


def wait_for_event(out: Path, kind: str, proc=None, timeout=120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (out / "events.jsonl").exists():
            for e in events(out):
                if e["event"] == kind:
                    return e
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"coordinator exited {proc.returncode}: {proc.stderr.read()}")
        time.sleep(0.2)
    raise AssertionError(f"no {kind} event in {out}")


def worker(port: int, *args: str, env=None, prefix=FEDSIM) -> subprocess.Popen:
    return subprocess.Popen(
        [*prefix, "worker", "--connect", f"tcp://127.0.0.1:{port}", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def finish(proc: subprocess.Popen, timeout=180) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert "Traceback" not in err, err
    return proc.returncode, err


def test_key_split_strangers_and_revoked_keys(tmp_path):
    keys, other = tmp_path / "keys", tmp_path / "other"
    curve.generate_keys(keys)
    curve.generate_keys(other)
    curve.add_worker(keys, "gone")
    (keys / "server" / "authorized" / "gone.key").unlink()  # revoked
    # a stranger: its own pair, but it knows this coordinator's public key
    stranger = tmp_path / "stranger"
    shutil.copytree(other / "worker", stranger)
    shutil.copyfile(keys / "server" / "server.key", stranger / "server.key")
    # the worker host gets its own folder and nothing else
    host = tmp_path / "host-w" / "worker"
    shutil.copytree(keys / "worker", host)
    assert not any("server.key_secret" == p.name for p in host.parent.rglob("*"))

    port = _free_port()
    coord, out = start_coordinator(tmp_path, port, f'curve_keys = "{keys}/server"')
    fast = ["--heartbeat", "0.5", "--timeout", "2"]
    refused = [worker(port, "--keys", str(d), *fast) for d in (stranger, keys / "gone")]
    foreign = worker(port, "--keys", str(other / "worker"), *fast)  # another server key
    for w in refused:
        code, err = finish(w)
        assert code == 2, err
        assert "refused by the coordinator's CURVE authenticator" in err
        assert len([ln for ln in err.splitlines() if ln.startswith("error:")]) == 1
    code, err = finish(foreign)
    assert code == 2 and "no answer from the coordinator" in err and "server.key" in err, err

    good = worker(port, "--keys", str(host))
    code, err = finish(good)
    assert code == 0, err
    lines = err.splitlines()
    assert any("connected to" in ln and "(CURVE)" in ln for ln in lines), err
    assert any("joined" in ln for ln in lines) and "exit 0" in lines[-1], err
    code, err = finish(coord)
    assert code == 0, err

    ev = events(out)
    keys_refused = {e["key"] for e in ev if e["event"] == "peer_refused" and e["key"]}
    assert curve.worker_keys(stranger)[0].decode() in keys_refused
    assert curve.worker_keys(keys / "gone")[0].decode() in keys_refused
    assert any(
        e["event"] == "peer_refused" and "public key" in e["reason"] for e in ev
    )  # the foreign server key fails the handshake before ZAP
    assert len([e for e in ev if e["event"] == "worker_joined"]) == 1


def _crafted_hello(port: int, **fields) -> dict:
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(f"tcp://127.0.0.1:{port}")
    hello = {"pid": 7, "host": "crafted", **P.local_versions(), **fields}
    s.send(P.pack_envelope(P.HELLO, **{k: v for k, v in hello.items() if v is not None}))
    assert s.poll(30_000), "no answer to a crafted hello"
    env = P.unpack_envelope(s.recv())
    s.close()
    ctx.term()
    return env


def test_version_mismatch_is_refused_on_both_sides(tmp_path):
    port = _free_port()
    coord, out = start_coordinator(tmp_path, port)
    ans = _crafted_hello(port, torch="1.0.0")
    assert ans["type"] == P.REFUSE and "torch 1.0.0 on the worker" in ans["reason"]
    for bad in ({"pid": "x"}, {"pid": True}, {"host": 3}, {"fedsim": None}, {"numpy": 2}):
        ans = _crafted_hello(port, **bad)
        assert ans["type"] == P.REFUSE and "malformed hello" in ans["reason"], bad
    ans = _crafted_hello(port, torch=P.local_versions()["torch"].split("+")[0] + "+other")
    assert ans["type"] == P.SETUP  # a local build tag is not a version

    patched = [
        sys.executable,
        "-c",
        "import sys, fedsim; fedsim.__version__ = '0.0.0.test'; "
        "from fedsim.cli import main; sys.exit(main(sys.argv[1:]))",
    ]
    code, err = finish(worker(port, prefix=patched))
    assert code == 2, err
    assert "refused by the coordinator: fedsim 0.0.0.test on the worker" in err, err
    code, err = finish(worker(port))  # a matching worker still runs the experiment
    assert code == 0, err
    assert finish(coord)[0] == 0
    refusals = [e for e in events(out) if e["event"] == "worker_refused"]
    assert len(refusals) == 7
    assert any("fedsim 0.0.0.test" in e["reason"] for e in refusals)


def test_worker_that_cannot_set_up_stops_the_run_at_once(tmp_path):
    plug = tmp_path / "plug"
    plug.mkdir()
    (plug / "onlyhere.py").write_text(
        "from fedsim.models.registry import get_model_builder\nbuild = get_model_builder('cnn')\n"
    )
    text = SHORT.replace('name = "cnn"', 'name = "onlyhere:build"')
    port = _free_port()
    env = {"PYTHONPATH": os.pathsep.join([str(plug), os.environ.get("PYTHONPATH", "")])}
    coord, out = start_coordinator(tmp_path, port, "worker_wait = 120", env=env, text=text)
    started = time.monotonic()
    wenv = {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    code, err = finish(worker(port, env=wenv))
    assert code == 2 and "cannot set up the scenario" in err and "onlyhere" in err, err
    code, err = finish(coord)
    assert code == 2, err
    assert "could not set up the scenario" in err and "onlyhere" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert time.monotonic() - started < 60  # not runtime.worker_wait


# ---- what a SIGKILLed coordinator leaves behind ---------------------------------------------


def descendants(root: int) -> dict[int, int]:
    """pid -> start time of every process below root (from /proc)."""
    from fedsim.runtime.executors.ray_watchdog import _stat

    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit() and (st := _stat(int(d))) is not None:
            kids.setdefault(st[0], []).append(int(d))
    found, todo = {}, list(kids.get(root, ()))
    while todo:
        pid = todo.pop()
        st = _stat(pid)
        if st is not None and pid not in found:
            found[pid] = st[1]
            todo.extend(kids.get(pid, ()))
    return found


def still_running(procs: dict[int, int], wait: float) -> list[int]:
    from fedsim.runtime.executors.ray_watchdog import _running

    deadline = time.monotonic() + wait
    while True:
        alive = [p for p, s in procs.items() if _running(p, s)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.5)


LONG = SHORT.replace("rounds = 2", "rounds = 500")


def _kill_mid_run(tmp_path: Path, *args: str) -> tuple[dict[int, int], dict]:
    scen = tmp_path / "s.toml"
    scen.write_text(LONG)
    out = tmp_path / "run"
    coord = subprocess.Popen(
        [*FEDSIM, "run", str(scen), "--out", str(out), "--quiet", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_event(out, "worker_joined", coord, timeout=240)
    wait_for_event(out, "round_start", coord)
    time.sleep(3)  # Ray starts its agents a little after the driver
    procs = descendants(coord.pid)
    listen = next((e for e in events(out) if e["event"] == "listen"), {})
    os.kill(coord.pid, signal.SIGKILL)
    coord.wait()
    return procs, listen


@pytest.mark.slow
def test_sigkilled_coordinator_leaves_no_ipc_folder_or_worker(tmp_path):
    procs, listen = _kill_mid_run(tmp_path, "--transport", "ipc", "--workers", "2")
    folder = Path(listen["endpoint"][len("ipc://") :]).parent
    assert folder.name.startswith("fedsim-run-") and procs
    assert not still_running(procs, 10), "worker processes outlived their coordinator"
    assert not folder.exists(), "the ipc folder outlived its coordinator"


@pytest.mark.slow
def test_sigkilled_coordinator_leaves_no_ray_process(tmp_path):
    pytest.importorskip("ray")
    procs, _ = _kill_mid_run(tmp_path, "--executor", "ray", "--workers", "1")
    assert len(procs) >= 4  # gcs_server, raylet, agents, the actor, the watchdog
    left = still_running(procs, 10)
    cmds = {p: Path(f"/proc/{p}/cmdline").read_bytes()[:80] for p in left}
    assert not left, f"left after 10 s: {json.dumps({p: c.decode() for p, c in cmds.items()})}"
