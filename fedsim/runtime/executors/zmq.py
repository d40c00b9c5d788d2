"""Client actors behind a ZeroMQ ROUTER: worker processes over ipc/tcp (docs/protocol.md).

A worker connects a DEALER and says HELLO; the coordinator answers SETUP with the resolved
scenario (TOML text, validated again by the worker — no pickle); the worker builds its
ClientRunner and says READY; then TASK -> RESULT, one task at a time per worker
(credit-based, so high-water marks stay small even with large messages). Both sides send
HEARTBEATs; a worker that is silent for `worker_timeout` seconds, or whose local process
has exited, is lost and its task re-run elsewhere (the `WorkerPool`'s rules). Events go to
events.jsonl through `on_event`, never into the simulated network.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from fedsim.codecs.wire import WireError
from fedsim.errors import RuntimeFailure
from fedsim.network import transport
from fedsim.runtime import protocol as P
from fedsim.runtime.device import worker_env
from fedsim.runtime.executors.base import PoolExecutor, Worker


def _ignore(exc: BaseException) -> None:
    """A heartbeat or goodbye that cannot be sent: liveness checks notice what matters."""


class RouterExecutor(PoolExecutor):
    """The coordinator's ROUTER and its receive loop, shared by worker processes and the
    in-process actor: HELLO -> join + SETUP, READY, HEARTBEAT, answers to the pool."""

    def __init__(self, scenario_toml: str, on_event: Callable[..., None], **pool_args: Any):
        super().__init__(on_event, **pool_args)
        self.scenario_toml = scenario_toml
        self.ctx = zmq.asyncio.Context()
        self.router: zmq.asyncio.Socket | None = None

    def _open_router(self) -> zmq.asyncio.Socket:
        self.router = self.ctx.socket(zmq.ROUTER)
        transport.configure_socket(self.router)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        return self.router

    def _send(self, worker: Worker, task: P.Task) -> str | None:
        self._send_to(worker.key, *P.task_frames(task))
        return None

    def _send_to(self, ident: bytes, *frames: Any) -> None:
        """A peer we cannot reach (gone since, or its queue full) is lost."""

        def failed(exc: BaseException) -> None:
            self.pool.lose(ident, f"send failed: {exc}")

        transport.send_nowait(self.router, [ident, *frames], failed)

    async def _pump(self) -> None:
        while True:
            ident, frames = await transport.recv_routed(self.router)
            try:
                env = P.unpack_envelope(frames[0])
            except (WireError, IndexError):
                env = {"type": None}
            kind = env["type"]
            if kind == P.HELLO:
                try:
                    pid, host = P.parse_hello(env)
                except WireError:
                    continue  # not a worker of ours
                self.pool.join(ident, ident.hex(), pid=pid, host=host)
                self._send_to(ident, P.pack_envelope(P.SETUP, scenario=self.scenario_toml))
            elif kind == P.READY:
                self.pool.ready(ident)
            elif kind == P.HEARTBEAT:
                self.pool.seen(ident)
            else:  # a result, an error or garbage: the pool judges
                self.pool.answer(ident, frames)

    def _shutdown_workers(self) -> None:
        if self.router is None:
            return
        for ident in [*self.pool.workers, *self.pool.lost]:  # a lost one may still listen
            transport.send_nowait(self.router, [ident, P.pack_envelope(P.SHUTDOWN)], _ignore)


class ZmqWorkerExecutor(RouterExecutor):
    def __init__(
        self,
        scenario: Any,
        scenario_toml: str,
        *,
        on_event: Callable[..., None] = lambda kind, **f: None,
    ):
        rt = scenario.runtime
        super().__init__(
            scenario_toml,
            on_event,
            interval=rt.heartbeat_interval,
            starve_wait=rt.worker_wait,
        )
        self.scenario = scenario
        self.spawn = rt.workers
        self.transport = rt.transport
        self.endpoint = rt.endpoint
        self.timeout = rt.worker_timeout
        self.keys_dir = rt.curve_keys
        self.threads = rt.torch_threads
        self.procs: list[subprocess.Popen] = []
        self._ipc_dir: str | None = None
        self.auth = None
        self.bound = ""

    # ---- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        router = self._open_router()
        if self.keys_dir:
            try:
                self.auth = transport.curve_server(self.ctx, router, self.keys_dir)
            except FileNotFoundError as e:
                raise RuntimeFailure(str(e)) from None
        if self.endpoint:
            router.bind(self.endpoint)
            self.bound = router.getsockopt(zmq.LAST_ENDPOINT).decode()
        elif self.transport == "ipc":
            self._ipc_dir = tempfile.mkdtemp(prefix="fedsim-")
            self.bound = f"ipc://{self._ipc_dir}/coordinator.sock"
            router.bind(self.bound)
        else:
            port = router.bind_to_random_port("tcp://127.0.0.1")
            self.bound = f"tcp://127.0.0.1:{port}"
        self.on_event("listen", endpoint=self.bound)
        for i in range(self.spawn):
            self.spawn_worker(i)
        self._background(self._pump())
        self._background(self._watch())

    def spawn_worker(self, index: int) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "fedsim", "worker", "--connect", self.bound]
        cmd += ["--threads", str(self.threads)]
        cmd += ["--heartbeat", str(self.interval), "--timeout", str(self.timeout)]
        if self.keys_dir:
            cmd += ["--keys", str(self.keys_dir)]
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads), FEDSIM_WORKER_INDEX=str(index))
        env.update(worker_env(self.scenario.runtime.device, index))  # its GPU, if any
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        self.on_event("worker_spawned", index=index, pid=proc.pid)
        return proc

    def _starved_message(self) -> str:
        return (
            f"no worker left: waited {self.starve_wait:.0f}s (runtime.worker_wait) for one "
            f"to connect to {self.bound}"
        )

    def _tick(self) -> None:
        """Heartbeats out, liveness in: silent workers and exited local processes are lost."""
        now = time.monotonic()
        dead_pids = {p.pid for p in self.procs if p.poll() is not None}
        for w in list(self.pool.workers.values()):
            if w.pid in dead_pids:
                self.pool.lose(w.key, "process exited")
            elif now - w.last_seen > self.timeout:
                self.pool.lose(w.key, f"silent for {now - w.last_seen:.1f}s")
            else:
                transport.send_nowait(self.router, [w.key, P.pack_envelope(P.HEARTBEAT)], _ignore)

    async def close(self) -> None:
        await self._stop_background()
        self._shutdown_workers()
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
