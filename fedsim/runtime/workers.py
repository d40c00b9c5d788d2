"""Worker processes over ZeroMQ ipc/tcp: the coordinator's ROUTER, each worker's DEALER.

Protocol (docs/protocol.md): a worker connects and says HELLO; the coordinator answers
SETUP with the resolved scenario (TOML text, validated again by the worker — no pickle);
the worker builds its ClientRunner and says READY; then TASK -> RESULT, one task at a time
per worker (credit-based, so high-water marks stay small even with large messages).
Both sides send HEARTBEATs; a worker that is silent for `worker_timeout` seconds, or whose
local process has exited, is lost: its in-flight task goes back to the queue and is
re-run on another worker from the same inputs, so the experiment does not change. Events
go to events.jsonl through the `on_event` callback, never into the simulated network.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from fedsim.codecs.wire import WireError, unpack_message
from fedsim.errors import RuntimeFailure
from fedsim.runtime import protocol as P
from fedsim.runtime.executors import Executor, configure_socket, corrupt_result


@dataclass
class WorkerInfo:
    ident: bytes
    pid: int | None = None
    host: str = ""
    state: str = "setup"  # setup -> idle <-> busy
    task: P.Task | None = None
    last_seen: float = field(default_factory=time.monotonic)
    tasks_done: int = 0


def load_curve_keys(keys_dir: str | Path, role: str) -> tuple[bytes, bytes]:
    """(public, secret) from `fedsim keys generate DIR` output for role 'server'/'worker'."""
    import zmq.auth

    path = Path(keys_dir) / f"{role}.key_secret"
    if not path.exists():
        raise RuntimeFailure(
            f"runtime.curve_keys: {path} not found (run `fedsim keys generate {keys_dir}`)"
        )
    public, secret = zmq.auth.load_certificate(str(path))
    return public, secret


def generate_keys(keys_dir: str | Path) -> list[Path]:
    import zmq.auth

    d = Path(keys_dir)
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for role in ("server", "worker"):
        for suffix in (".key", ".key_secret"):
            p = d / f"{role}{suffix}"
            if p.exists():
                p.unlink()
        pub, sec = zmq.auth.create_certificates(str(d), role)
        os.chmod(sec, 0o600)
        out += [Path(pub), Path(sec)]
    return out


class ZmqWorkerExecutor(Executor):
    def __init__(
        self,
        scenario: Any,
        scenario_toml: str,
        *,
        on_event: Callable[..., None] = lambda kind, **f: None,
    ):
        rt = scenario.runtime
        self.scenario = scenario
        self.scenario_toml = scenario_toml
        self.on_event = on_event
        self.spawn = rt.workers
        self.transport = rt.transport
        self.endpoint = rt.endpoint
        self.heartbeat = rt.heartbeat_interval
        self.timeout = rt.worker_timeout
        self.wait_for_workers = rt.worker_wait
        self.keys_dir = rt.curve_keys
        self.threads = rt.torch_threads
        self.ctx = zmq.asyncio.Context()
        self.router: zmq.asyncio.Socket | None = None
        self.workers: dict[bytes, WorkerInfo] = {}
        self.procs: list[subprocess.Popen] = []
        self.pending: collections.deque[P.Task] = collections.deque()
        self.results: dict[int, P.TaskResult] = {}
        self.corrupt: dict[int, int] = collections.defaultdict(int)
        self.fatal: BaseException | None = None
        self._changed = asyncio.Event()
        self._bg: list[asyncio.Task] = []
        self._ipc_dir: str | None = None
        self.auth = None

    # ---- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        self.router = self.ctx.socket(zmq.ROUTER)
        configure_socket(self.router)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        if self.keys_dir:
            from zmq.auth.asyncio import AsyncioAuthenticator

            self.auth = AsyncioAuthenticator(self.ctx)
            self.auth.start()
            self.auth.configure_curve(domain="*", location=str(Path(self.keys_dir)))
            pub, sec = load_curve_keys(self.keys_dir, "server")
            self.router.curve_server = True
            self.router.curve_publickey = pub
            self.router.curve_secretkey = sec
        if self.endpoint:
            self.router.bind(self.endpoint)
            self.bound = self.router.getsockopt(zmq.LAST_ENDPOINT).decode()
        elif self.transport == "ipc":
            self._ipc_dir = tempfile.mkdtemp(prefix="fedsim-")
            self.bound = f"ipc://{self._ipc_dir}/coordinator.sock"
            self.router.bind(self.bound)
        else:
            port = self.router.bind_to_random_port("tcp://127.0.0.1")
            self.bound = f"tcp://127.0.0.1:{port}"
        self.on_event("listen", endpoint=self.bound)
        for i in range(self.spawn):
            self.spawn_worker(i)
        self._bg = [asyncio.ensure_future(self._pump()), asyncio.ensure_future(self._watch())]

    def spawn_worker(self, index: int) -> subprocess.Popen:
        cmd = [
            sys.executable,
            "-m",
            "fedsim",
            "worker",
            "--connect",
            self.bound,
            "--threads",
            str(self.threads),
        ]
        cmd += ["--heartbeat", str(self.heartbeat), "--timeout", str(self.timeout)]
        if self.keys_dir:
            cmd += ["--keys", str(self.keys_dir)]
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads), FEDSIM_WORKER_INDEX=str(index))
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        self.on_event("worker_spawned", index=index, pid=proc.pid)
        return proc

    async def close(self) -> None:
        for t in self._bg:
            t.cancel()
        for t in self._bg:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        if self.router is not None:
            for ident in list(self.workers):
                try:
                    self.router.send_multipart(
                        [ident, P.pack_envelope(P.SHUTDOWN)], flags=zmq.NOBLOCK
                    )
                except zmq.ZMQError:
                    pass
        deadline = time.monotonic() + 5
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.auth is not None:
            self.auth.stop()
        if self.router is not None:
            self.router.close(linger=0)
        self.ctx.term()
        if self._ipc_dir:
            for p in Path(self._ipc_dir).glob("*"):
                p.unlink(missing_ok=True)
            os.rmdir(self._ipc_dir)

    # ---- the round ----------------------------------------------------------------------
    async def run(self, tasks: Sequence[P.Task]) -> dict[int, P.TaskResult]:
        self.pending.extend(tasks)
        wanted = {t.task_id for t in tasks}
        no_worker_since: float | None = None
        while not wanted <= set(self.results):
            if self.fatal is not None:
                raise self.fatal
            self._dispatch()
            if not self.workers and self.pending:
                no_worker_since = no_worker_since or time.monotonic()
                waited = time.monotonic() - no_worker_since
                if waited > self.wait_for_workers:
                    raise RuntimeFailure(
                        f"no worker left: waited {self.wait_for_workers:.0f}s (runtime.worker_wait) for one "
                        f"to connect to {self.bound}"
                    )
            else:
                no_worker_since = None
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=self.heartbeat)
            except asyncio.TimeoutError:
                pass
        return {tid: self.results.pop(tid) for tid in wanted}

    def _dispatch(self) -> None:
        for w in sorted(self.workers.values(), key=lambda w: w.ident):
            if not self.pending:
                return
            if w.state != "idle":
                continue
            task = self.pending.popleft()
            try:
                self.router.send_multipart(
                    [w.ident, *P.task_frames(task)], copy=False, flags=zmq.NOBLOCK
                )
            except zmq.ZMQError as e:
                self.pending.appendleft(task)
                self._lose(w, f"send failed: {e}")
                continue
            w.state, w.task = "busy", task

    def _lose(self, w: WorkerInfo, why: str) -> None:
        if self.workers.pop(w.ident, None) is None:
            return
        self.on_event("worker_lost", worker=w.ident.hex(), pid=w.pid, reason=why)
        if w.task is not None:
            self.pending.appendleft(w.task)
            self.on_event(
                "redispatch",
                task=w.task.task_id,
                round=w.task.round,
                client=w.task.client_id,
                reason="worker_lost",
            )
        self._changed.set()

    async def _watch(self) -> None:
        """Heartbeats out, liveness in: silent workers and exited local processes are lost."""
        while True:
            await asyncio.sleep(self.heartbeat)
            now = time.monotonic()
            dead_pids = {p.pid for p in self.procs if p.poll() is not None}
            for w in list(self.workers.values()):
                if w.pid in dead_pids:
                    self._lose(w, "process exited")
                elif now - w.last_seen > self.timeout:
                    self._lose(w, f"silent for {now - w.last_seen:.1f}s")
                else:
                    try:
                        await self.router.send_multipart(
                            [w.ident, P.pack_envelope(P.HEARTBEAT)], flags=zmq.NOBLOCK
                        )
                    except zmq.ZMQError:
                        pass

    async def _pump(self) -> None:
        while True:
            frames = await self.router.recv_multipart(copy=False)
            ident = frames[0].bytes
            bufs = [f.buffer for f in frames[1:]]
            w = self.workers.get(ident)
            try:
                env = P.unpack_envelope(bufs[0])
                kind = env["type"]
                if kind == P.HELLO:
                    w = WorkerInfo(ident, pid=env.get("pid"), host=str(env.get("host", "")))
                    self.workers[ident] = w
                    self.on_event("worker_joined", worker=ident.hex(), pid=w.pid, host=w.host)
                    await self.router.send_multipart(
                        [ident, P.pack_envelope(P.SETUP, scenario=self.scenario_toml)]
                    )
                    continue
                if w is None:
                    continue  # not (or no longer) one of ours: ignore
                w.last_seen = time.monotonic()
                if kind == P.READY:
                    w.state = "idle"
                elif kind == P.RESULT:
                    res = P.parse_result(bufs, env)
                    if w.task is None or res.task_id != w.task.task_id:
                        raise WireError(
                            f"result for task {res.task_id}, worker holds {w.task and w.task.task_id}"
                        )
                    unpack_message(res.update)  # validate before accepting (no copy)
                    if res.state:
                        P.check_state(res.state)
                    # the frames' memoryviews keep their zmq frames alive: no copy needed
                    self.results[res.task_id] = P.TaskResult(
                        res.task_id,
                        res.round,
                        res.client_id,
                        list(res.update),
                        list(res.state),
                        res.meta,
                    )
                    w.state, w.task = "idle", None
                    w.tasks_done += 1
                elif kind == P.ERROR:
                    task = w.task
                    self.fatal = RuntimeFailure(
                        f"client {task.client_id if task else '?'} failed in round {task.round if task else '?'} "
                        f"on worker pid {w.pid}: {env.get('message')}"
                    )
                elif kind == P.HEARTBEAT:
                    pass
            except WireError as e:
                if w is None:
                    continue
                if w.task is None:
                    self.on_event("corrupt_message", worker=ident.hex(), pid=w.pid, error=str(e))
                else:
                    corrupt_result(self, w.task, ident.hex(), w.pid, e)
                    w.state, w.task = "idle", None
            self._changed.set()


# ---- the worker side --------------------------------------------------------------------


async def worker_loop(
    endpoint: str, *, keys_dir: str | None, threads: int, heartbeat: float, timeout: float
) -> int:
    import socket
    from concurrent.futures import ThreadPoolExecutor

    import tomllib
    import torch

    from fedsim.runtime.client import ClientRunner
    from fedsim.scenario import validate_doc

    torch.set_num_threads(threads)
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.DEALER)
    configure_socket(sock)
    sock.setsockopt(zmq.IDENTITY, uuid.uuid4().bytes)
    if keys_dir:
        pub, sec = load_curve_keys(keys_dir, "worker")
        server_pub, _ = load_curve_keys(keys_dir, "server")
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = pub, sec, server_pub
    sock.connect(endpoint)
    await sock.send_multipart(
        [P.pack_envelope(P.HELLO, pid=os.getpid(), host=socket.gethostname())]
    )
    pool = ThreadPoolExecutor(max_workers=1)
    loop = asyncio.get_running_loop()
    runner: ClientRunner | None = None
    last_seen = time.monotonic()
    parent = os.getppid()

    async def beat() -> None:
        while True:
            await asyncio.sleep(heartbeat)
            await sock.send_multipart([P.pack_envelope(P.HEARTBEAT)])

    beater = asyncio.ensure_future(beat())
    fault = _fault_injection()
    tasks_seen = 0
    try:
        while True:
            try:
                frames = await asyncio.wait_for(sock.recv_multipart(copy=False), timeout=heartbeat)
            except asyncio.TimeoutError:
                if time.monotonic() - last_seen > 2 * timeout or (
                    parent != 1 and os.getppid() == 1
                ):
                    return 3  # the coordinator is gone
                continue
            last_seen = time.monotonic()
            bufs = [f.buffer for f in frames]
            env = P.unpack_envelope(bufs[0])
            kind = env["type"]
            if kind == P.SHUTDOWN:
                return 0
            if kind == P.SETUP:
                scenario = validate_doc(tomllib.loads(str(env["scenario"])))
                runner = await loop.run_in_executor(pool, ClientRunner, scenario)
                await sock.send_multipart([P.pack_envelope(P.READY)])
            elif kind == P.TASK:
                task = P.parse_task(bufs, env)
                tasks_seen += 1
                try:
                    result = await loop.run_in_executor(pool, runner.run, task)
                except Exception as e:
                    await sock.send_multipart(
                        [
                            P.pack_envelope(
                                P.ERROR, task=task.task_id, message=f"{type(e).__name__}: {e}"
                            )
                        ]
                    )
                    continue
                frames = P.result_frames(result)
                if fault == ("kill", tasks_seen):
                    os.kill(os.getpid(), signal.SIGKILL)
                if fault == ("corrupt", tasks_seen):
                    frames = [frames[0], b"\x93garbage", *frames[2:]]
                await sock.send_multipart(frames, copy=False)
    finally:
        beater.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
        sock.close(linger=1000)
        ctx.term()


def _fault_injection() -> tuple[str, int] | None:
    """Test hook: FEDSIM_FAULT="kill:I:N" makes worker index I SIGKILL itself on its N-th
    task (before answering); "corrupt:I:N" makes it send a malformed update once."""
    spec = os.environ.get("FEDSIM_FAULT", "")
    parts = spec.split(":")
    if len(parts) != 3 or parts[1] != os.environ.get("FEDSIM_WORKER_INDEX"):
        return None
    return parts[0], int(parts[2])


def run_worker(
    endpoint: str, *, keys_dir: str | None, threads: int, heartbeat: float, timeout: float
) -> int:
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    try:
        return asyncio.run(
            worker_loop(
                endpoint, keys_dir=keys_dir, threads=threads, heartbeat=heartbeat, timeout=timeout
            )
        )
    except KeyboardInterrupt:
        return 130
