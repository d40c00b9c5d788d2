"""CURVE key folders (`fedsim keys generate`, `add-worker`), the authenticator's allow-list
read per handshake (revocation), stale run folders, scenario-relative paths."""

import os
import stat
import subprocess
import sys

import pytest
import zmq
from fedsim.network import curve, transport

from fedsim.cli import main
from fedsim.runtime import protocol as P
from fedsim.scenario import load_scenario


def test_generate_splits_the_keys(tmp_path, capsys):
    keys = tmp_path / "keys"
    assert main(["keys", "generate", str(keys)]) == 0
    files = sorted(p.relative_to(keys).as_posix() for p in keys.rglob("*") if p.is_file())
    assert files == [
        "server/authorized/worker.key",
        "server/server.key",
        "server/server.key_secret",
        "worker/server.key",
        "worker/worker.key",
        "worker/worker.key_secret",
    ]
    # the worker's folder holds no secret of the server's, and secrets are owner-only
    assert not any("secret" in p.name and "server" in p.name for p in (keys / "worker").iterdir())
    for secret in keys.rglob("*.key_secret"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert (keys / "worker" / "server.key").read_bytes() == (
        keys / "server" / "server.key"
    ).read_bytes()
    assert (keys / "server" / "authorized" / "worker.key").read_bytes() == (
        keys / "worker" / "worker.key"
    ).read_bytes()
    out = capsys.readouterr().out
    assert "runtime.curve_keys" in out and str(keys / "worker") in out


def test_generate_refuses_to_overwrite(tmp_path, capsys):
    keys = tmp_path / "keys"
    assert main(["keys", "generate", str(keys)]) == 0
    before = (keys / "server" / "server.key_secret").read_bytes()
    assert main(["keys", "generate", str(keys)]) == 2
    err = capsys.readouterr().err
    assert "--force" in err and len(err.strip().splitlines()) == 1
    assert (keys / "server" / "server.key_secret").read_bytes() == before
    assert main(["keys", "add-worker", str(keys), "b"]) == 0
    assert main(["keys", "generate", str(keys), "--force"]) == 0
    assert (keys / "server" / "server.key_secret").read_bytes() != before
    assert not (keys / "b").exists()  # identities of the old server key are gone
    assert sorted(p.name for p in (keys / "server" / "authorized").iterdir()) == ["worker.key"]


def test_add_worker(tmp_path, capsys):
    keys = tmp_path / "keys"
    assert main(["keys", "add-worker", str(keys), "b"]) == 2  # nothing generated yet
    assert main(["keys", "generate", str(keys)]) == 0
    assert main(["keys", "add-worker", str(keys), "host-b"]) == 0
    pub, _, server_pub = curve.worker_keys(keys / "host-b")
    assert server_pub == curve.server_keys(keys / "server")[0]
    assert pub in curve.authorized_keys(keys / "server")
    assert main(["keys", "add-worker", str(keys), "host-b"]) == 2  # exists
    for bad in ("server", "../x", ".hidden", "a/b", ""):
        assert main(["keys", "add-worker", str(keys), bad]) == 2
    assert main(["keys", "add-worker", str(keys), "host-b", "--force"]) == 0
    assert curve.worker_keys(keys / "host-b")[0] != pub
    assert pub not in curve.authorized_keys(keys / "server")
    capsys.readouterr()


def test_folders_of_the_wrong_role_are_named(tmp_path):
    keys = tmp_path / "keys"
    curve.generate_keys(keys)
    with pytest.raises(curve.KeyFolderError, match="point runtime.curve_keys at"):
        curve.server_keys(keys)
    with pytest.raises(curve.KeyFolderError, match="is a worker.s folder"):
        curve.server_keys(keys / "worker")
    with pytest.raises(curve.KeyFolderError, match="a worker needs its own"):
        curve.worker_keys(keys / "server")
    with pytest.raises(curve.KeyFolderError, match="give the worker"):
        curve.worker_keys(keys)
    old = tmp_path / "old"  # the flat layout of earlier versions
    old.mkdir()
    for f in (keys / "server").glob("server.*"):
        (old / f.name).write_bytes(f.read_bytes())
    with pytest.raises(curve.KeyFolderError, match="older fedsim"):
        curve.server_keys(old)


def _handshake(server_dir, client_dir, extra=frozenset(), wait=3.0):
    """A CURVE ROUTER with the Authenticator and one DEALER: (message got through?, refusals)."""
    import asyncio

    import zmq.asyncio

    async def go():
        ctx = zmq.asyncio.Context()
        refused = []
        auth = curve.Authenticator(ctx, server_dir, lambda **f: refused.append(f), extra=extra)
        auth.start()
        router = ctx.socket(zmq.ROUTER)
        curve.make_server(router, server_dir)
        port = router.bind_to_random_port("tcp://127.0.0.1")
        dealer = ctx.socket(zmq.DEALER)
        curve.make_client(dealer, client_dir)
        dealer.connect(f"tcp://127.0.0.1:{port}")
        await dealer.send(b"hi")
        try:
            got = bool(await asyncio.wait_for(router.recv_multipart(), wait))
        except asyncio.TimeoutError:
            got = False
        auth.stop()
        await asyncio.sleep(0)
        ctx.destroy(linger=0)
        return got, refused

    return asyncio.run(go())


def test_revocation_is_read_at_each_handshake(tmp_path):
    keys = tmp_path / "keys"
    curve.generate_keys(keys)
    curve.add_worker(keys, "b")
    assert _handshake(keys / "server", keys / "b") == (True, [])
    (keys / "server" / "authorized" / "b.key").unlink()  # revoke b; no restart needed
    got, refused = _handshake(keys / "server", keys / "b")
    assert not got
    assert refused and refused[0]["reason"] == "CURVE: unknown key"
    assert refused[0]["key"] == curve.worker_keys(keys / "b")[0].decode()
    assert refused[0]["address"] == "127.0.0.1"


def test_refusals_are_reported_once_a_minute():
    seen = []
    auth = curve.Authenticator(zmq.Context.instance(), "nowhere", lambda **f: seen.append(f))
    for _ in range(5):
        auth.report("10.0.0.1", "KEY", "CURVE: unknown key")
    auth.report("10.0.0.2", "KEY", "CURVE: unknown key")
    assert len(seen) == 2
    auth._reported[("10.0.0.1", "KEY")] = (-1e9, 4)
    auth.report("10.0.0.1", "KEY", "CURVE: unknown key")
    assert seen[-1]["repeats"] == 4


def test_stale_run_folders_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{transport.RUN_FOLDER_PREFIX}{dead.pid}-abc"
    live = tmp_path / f"{transport.RUN_FOLDER_PREFIX}{os.getpid()}-def"
    other = tmp_path / "fedsim-unrelated"
    for d in (stale, live, other):
        d.mkdir()
        (d / "coordinator.sock").write_text("")
    assert transport.remove_stale_run_folders(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and other.exists()


def test_relative_paths_resolve_against_the_scenario_folder(tmp_path, monkeypatch):
    sub = tmp_path / "exp"
    (sub / "keys").mkdir(parents=True)
    curve.generate_keys(sub / "keys")
    (sub / "trace.csv").write_text("client_id,start,end\n0,0,100\n1,0,100\n")
    (sub / "s.toml").write_text(
        """
name = "paths"
rounds = 1
[data]
dataset = "mnist5k"
root = "data"
[clients]
count = 2
per_round = 1
[network.availability]
model = "trace"
trace = "trace.csv"
[runtime]
state_store = "disk"
state_dir = "state"
curve_keys = "keys/server"
"""
    )
    monkeypatch.chdir(tmp_path)  # the working directory is not the scenario's folder
    sc = load_scenario("exp/s.toml")
    assert sc.data.root == str(sub / "data")
    assert sc.network.availability.trace == str(sub / "trace.csv")
    assert sc.runtime.state_dir == str(sub / "state")
    assert sc.runtime.curve_keys == str(sub / "keys" / "server")
    assert main(["validate", "exp/s.toml"]) == 0


def test_folders_of_the_wrong_role_are_bad_input(tmp_path, capsys):
    keys = tmp_path / "keys"
    curve.generate_keys(keys)
    scen = tmp_path / "s.toml"
    for folder, words in ((keys, "point runtime.curve_keys at"), (keys / "worker", "worker's")):
        scen.write_text(f'name = "k"\n[runtime]\ncurve_keys = "{folder}"\n')
        assert main(["validate", str(scen)]) == 2
        err = capsys.readouterr().err
        assert "runtime.curve_keys" in err and words in err and len(err.splitlines()) == 1
    proc = subprocess.run(
        [sys.executable, "-m", "fedsim", "worker", "--connect", "tcp://127.0.0.1:9"]
        + ["--keys", str(keys / "server")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "--keys:" in proc.stderr and "a worker needs its own" in proc.stderr


def test_a_ray_actor_that_cannot_set_up_stops_the_run(tmp_path):
    """The actor answers ready() with ERROR; the executor fails the run at once with it."""
    import asyncio
    import concurrent.futures

    from fedsim.runtime.executors.ray import ClientActor, RayExecutor
    from fedsim.scenario import dump_scenario
    from fedsim.scenario.load import validate_doc

    sc = validate_doc({"name": "r", "model": {"name": "not_installed_anywhere:build"}})
    toml = dump_scenario(sc)
    frames = ClientActor(toml, 1).ready()
    env = P.unpack_envelope(frames[0])
    assert env["type"] == "error" and "not_installed_anywhere" in env["message"]

    async def go():
        ex = RayExecutor(sc, toml)
        ex.handles[0] = object()
        fut = concurrent.futures.Future()
        fut.set_result(frames)
        ex._on_ready(0, fut)
        return ex.pool.fatal

    fatal = asyncio.run(go())
    assert fatal is not None and "could not build its client runner" in str(fatal)
    assert "not_installed_anywhere" in str(fatal)
