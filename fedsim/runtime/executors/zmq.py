"""Client actors behind a ZeroMQ ROUTER: worker processes over ipc/tcp (docs/protocol.md).

A worker connects a DEALER and says HELLO; the coordinator answers SETUP with the resolved
scenario (TOML text, validated again by the worker — no pickle); the worker builds its
ClientRunner and says READY; then TASK -> RESULT, one task at a time per worker
(credit-based, so high-water marks stay small even with large messages), or with
`runtime.batch_clients` = N one group of up to N tasks, trained together, one RESULT each. Both sides send
HEARTBEATs; a worker that is silent for `worker_timeout` seconds, or whose local process
has exited, is lost and its task re-run elsewhere (the `WorkerPool`'s rules). Events go to
events.jsonl through `on_event`, never into the simulated network.

A HELLO whose fields are malformed, or whose fedsim or torch version differs from ours, is
answered REFUSE with the reason (`worker_refused`). A worker that cannot build its runner at
SETUP answers ERROR, and the run stops at once with its message. With `runtime.curve_keys`
the ROUTER is a CURVE server: ZAP lets in the keys of `DIR/server/authorized` and the
coordinator's own local workers (a key pair made for this run, in its private folder); every
refused peer is logged (`peer_refused`).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from fedsim.codecs.wire import WireError
from fedsim.errors import RuntimeFailure
from fedsim.network import curve, transport
from fedsim.runtime import protocol as P
from fedsim.runtime.device import worker_env
from fedsim.runtime.executors.actor import GROUP_KEY, RUN_FOLDER_ENV
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
        self.versions = P.local_versions()

    def _open_router(self) -> zmq.asyncio.Socket:
        self.router = self.ctx.socket(zmq.ROUTER)
        transport.configure_socket(self.router)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        return self.router

    def _send(self, worker: Worker, task: P.Task) -> str | None:
        self._send_to(worker.key, *P.task_frames(task))
        return None

    def _send_group(self, worker: Worker, tasks: tuple[P.Task, ...]) -> str | None:
        """The group's tasks back to back, each saying how many make the group: the actor
        gathers them all and trains them together (`actor.serve`)."""
        for task in tasks:
            grouped = replace(task, meta={**task.meta, GROUP_KEY: len(tasks)})
            self._send_to(worker.key, *P.task_frames(grouped))
        return None

    def _open_router_for_groups(self) -> zmq.asyncio.Socket:
        """The ROUTER, with room for a whole group of tasks queued to one peer (set before
        bind/connect: a pipe takes its high-water mark when it is made)."""
        router = self._open_router()
        router.setsockopt(zmq.SNDHWM, max(transport.SNDHWM, 2 * self.group_size + 2))
        return router

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
                self._hello(ident, env)
            elif kind == P.ERROR and self._setup_error(ident, env):
                pass
            elif kind == P.READY:
                self.pool.ready(ident)
            elif kind == P.HEARTBEAT:
                self.pool.seen(ident)
            else:  # a result, an error or garbage: the pool judges
                self.pool.answer(ident, frames)

    def _hello(self, ident: bytes, env: dict) -> None:
        """Join a worker whose hello is well-formed and whose versions match ours; else tell
        it why not (it exits with that line) and log `worker_refused`."""
        pid, host = env.get("pid"), env.get("host")
        try:
            pid, host = P.parse_hello(env)
            why = P.version_refusal(P.parse_versions(env), self.versions)
        except WireError as e:
            why = f"malformed hello: {e}"
        if why is not None:
            self.on_event(
                "worker_refused",
                worker=ident.hex(),
                pid=pid if isinstance(pid, int) else None,
                host=host if isinstance(host, str) else None,
                reason=why,
            )
            self._send_to(ident, P.pack_envelope(P.REFUSE, reason=why))
            return
        versions = {k: env[k] for k in P.VERSIONS}
        self.pool.join(ident, ident.hex(), pid=pid, host=host, **versions)
        self._send_to(ident, P.pack_envelope(P.SETUP, scenario=self.scenario_toml))

    def _setup_error(self, ident: bytes, env: dict) -> bool:
        """An ERROR from a worker that joined but is not ready: it could not build its client
        runner from the scenario; that will not get better elsewhere, so stop now."""
        w = self.pool.workers.get(ident)
        if w is None or w.ready:
            return w is None  # a stranger's error is dropped; a ready worker's goes to the pool
        where = f"{w.name} (pid {w.pid}{', ' + w.host if w.host else ''})"
        self.pool.fail(
            RuntimeFailure(f"worker {where} could not set up the scenario: {env.get('message')}")
        )
        return True

    def _shutdown_workers(self) -> None:
        if self.router is None:
            return
        for ident in [*self.pool.workers, *self.pool.lost]:  # a lost one may still listen
            transport.send_nowait(self.router, [ident, P.pack_envelope(P.SHUTDOWN)], _ignore)


ASYNC_CREDIT = 2  # tasks queued on each worker under FedBuff


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
            # FedBuff keeps more tasks in flight than workers: a second one queued on each
            # worker hides the round trip through the coordinator (busy aggregating, encoding,
            # evaluating). Synchronous rounds end at a barrier, where a task committed early
            # to a worker could only finish later than on whichever worker frees up first.
            credit=ASYNC_CREDIT if scenario.server.mode == "async" else 1,
            group_size=rt.batch_clients,
        )
        self.scenario = scenario
        self.spawn = rt.workers
        self.transport = rt.transport
        self.endpoint = rt.endpoint
        self.timeout = rt.worker_timeout
        self.keys_dir = rt.curve_keys
        self.threads = rt.torch_threads
        self.procs: list[subprocess.Popen] = []
        self._folder: Path | None = None  # private: ipc socket, local workers' keys
        self._local_keys: Path | None = None
        self.auth: curve.Authenticator | None = None
        self.bound = ""

    # ---- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        router = self._open_router_for_groups()
        self._folder = transport.run_folder()
        if self.keys_dir:
            self._start_curve(router)
        if self.endpoint:
            router.bind(self.endpoint)
            self.bound = router.getsockopt(zmq.LAST_ENDPOINT).decode()
        elif self.transport == "ipc":
            self.bound = f"ipc://{self._folder}/coordinator.sock"
            router.bind(self.bound)
        else:
            port = router.bind_to_random_port("tcp://127.0.0.1")
            self.bound = f"tcp://127.0.0.1:{port}"
        self.on_event("listen", endpoint=self.bound)
        for i in range(self.spawn):
            self.spawn_worker(i)
        self._background(self._pump())
        self._background(self._watch())

    def _start_curve(self, router: zmq.asyncio.Socket) -> None:
        """CURVE server with ZAP; our own local workers get a key pair made for this run."""
        try:
            curve.make_server(router, self.keys_dir)
            local = []
            if self.spawn:
                self._local_keys = self._folder / "local-worker"
                curve.local_identity(self.keys_dir, self._local_keys)
                local = [curve.worker_keys(self._local_keys)[0]]
        except curve.KeyFolderError as e:
            raise RuntimeFailure(f"runtime.curve_keys: {e}") from None
        self.auth = curve.Authenticator(self.ctx, self.keys_dir, self._refused, extra=set(local))
        self.auth.start()
        self._background(self._watch_handshakes(router.get_monitor_socket()))

    def _refused(self, **fields: Any) -> None:
        self.on_event("peer_refused", **fields)

    async def _watch_handshakes(self, monitor: zmq.asyncio.Socket) -> None:
        """Peers that fail the CURVE handshake before ZAP is asked (no CURVE at all, or a key
        folder made for another coordinator) are refused peers too."""
        from zmq.utils.monitor import parse_monitor_message

        try:
            while True:
                event = parse_monitor_message(await monitor.recv_multipart())
                if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                    self.auth.report("", "", curve.handshake_failure(event["value"]))
                elif event["event"] == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                    self.auth.report("", "", "handshake failed: the peer closed the connection")
        finally:
            monitor.close(linger=0)

    def spawn_worker(self, index: int) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "fedsim", "worker", "--connect", self.bound, "--quiet"]
        cmd += ["--threads", str(self.threads)]
        cmd += ["--heartbeat", str(self.interval), "--timeout", str(self.timeout)]
        if self._local_keys is not None:
            cmd += ["--keys", str(self._local_keys)]
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads), FEDSIM_WORKER_INDEX=str(index))
        env[RUN_FOLDER_ENV] = str(self._folder)  # a worker outliving us removes it
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
        if self.auth is not None and self.router is not None:
            self.router.disable_monitor()  # before its monitor socket closes
        await self._stop_background()
        self._shutdown_workers()
        # A local worker still training (FedBuff's clients in flight when the run ended) would
        # read SHUTDOWN only after its tasks: nothing it computes is used now, so stop it.
        busy = {w.pid for w in self.pool.workers.values() if w.inflight}
        for proc in self.procs:
            if proc.pid in busy and proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 5
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.auth is not None:
            self.auth.stop()
            await asyncio.sleep(0)  # let its poller task see the cancellation
        if self.router is not None:
            self.router.close(linger=0)
        self.ctx.term()
        if self._folder is not None:
            transport.remove_run_folder(self._folder)
