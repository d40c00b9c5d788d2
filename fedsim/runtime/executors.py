"""Client execution: one interface, several implementations.

`Executor.run(tasks)` takes the round's tasks (encoded model + client state frames) and
returns one `TaskResult` per task. Every implementation moves the same wire-format frames,
so bytes, simulated time and results do not depend on which one ran.

- `InprocExecutor`: a client actor in the coordinator's own process, reached through
  ZeroMQ's inproc transport (messages are still encoded and really sent).
- `ZmqWorkerExecutor` (fedsim.runtime.workers): worker processes over ipc/tcp.
- `RayExecutor` (fedsim.runtime.ray_executor): Ray actors, locally or on a cluster.
"""

from __future__ import annotations

import abc
import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import zmq
import zmq.asyncio

from fedsim.codecs.wire import WireError
from fedsim.errors import RuntimeFailure
from fedsim.runtime import protocol as P
from fedsim.runtime.client import ClientRunner

SNDHWM = 16
RCVHWM = 16


class Executor(abc.ABC):
    """Runs the round's tasks somewhere and returns one validated result per task."""

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def run(self, tasks: Sequence[P.Task]) -> dict[int, P.TaskResult]: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


def configure_socket(sock: zmq.Socket, *, max_msg: int = 1 << 31) -> None:
    sock.setsockopt(zmq.LINGER, 1000)
    sock.setsockopt(zmq.SNDHWM, SNDHWM)
    sock.setsockopt(zmq.RCVHWM, RCVHWM)
    sock.setsockopt(zmq.MAXMSGSIZE, max_msg)


async def serve_worker(sock: zmq.asyncio.Socket, runner: ClientRunner) -> None:
    """The client actor loop: READY, then TASK -> RESULT until SHUTDOWN."""
    await sock.send_multipart([P.pack_envelope(P.READY)])
    while True:
        frames = await sock.recv_multipart(copy=False)
        bufs = [f.buffer for f in frames]
        env = P.unpack_envelope(bufs[0])
        if env["type"] == P.SHUTDOWN:
            return
        if env["type"] == P.TASK:
            task = P.parse_task(bufs, env)
            try:
                result = runner.run(task)
            except Exception as e:  # report, the coordinator decides
                await sock.send_multipart(
                    [
                        P.pack_envelope(
                            P.ERROR, task=task.task_id, message=f"{type(e).__name__}: {e}"
                        )
                    ]
                )
                continue
            await sock.send_multipart(P.result_frames(result), copy=False)


class InprocExecutor(Executor):
    def __init__(self, runner: ClientRunner):
        self.runner = runner
        self.ctx = zmq.asyncio.Context()
        self.endpoint = f"inproc://fedsim-{uuid.uuid4().hex}"
        self.router: zmq.asyncio.Socket | None = None
        self.worker_task: asyncio.Task | None = None
        self.worker_id: bytes | None = None

    async def start(self) -> None:
        self.router = self.ctx.socket(zmq.ROUTER)
        configure_socket(self.router)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.bind(self.endpoint)
        dealer = self.ctx.socket(zmq.DEALER)
        configure_socket(dealer)
        dealer.connect(self.endpoint)
        self._dealer = dealer
        self.worker_task = asyncio.ensure_future(serve_worker(dealer, self.runner))
        ident, env, _ = await self._recv()
        if env["type"] != P.READY:
            raise RuntimeFailure(f"in-process worker said {env['type']!r} instead of ready")
        self.worker_id = ident

    async def _recv(self) -> tuple[bytes, dict, list]:
        frames = await self.router.recv_multipart(copy=False)
        ident = frames[0].bytes
        bufs = [f.buffer for f in frames[1:]]
        return ident, P.unpack_envelope(bufs[0]), bufs

    async def run(self, tasks: Sequence[P.Task]) -> dict[int, P.TaskResult]:
        out: dict[int, P.TaskResult] = {}
        for task in tasks:
            await self.router.send_multipart([self.worker_id, *P.task_frames(task)], copy=False)
            while True:
                done = asyncio.ensure_future(self._recv())
                await asyncio.wait([done, self.worker_task], return_when=asyncio.FIRST_COMPLETED)
                if not done.done():
                    done.cancel()
                    exc = self.worker_task.exception()
                    raise RuntimeFailure(f"in-process client actor stopped: {exc}")
                _, env, bufs = done.result()
                if env["type"] == P.ERROR:
                    raise RuntimeFailure(
                        f"client {task.client_id} failed in round {task.round}: {env.get('message')}"
                    )
                if env["type"] == P.RESULT:
                    res = P.parse_result(bufs, env)
                    if res.task_id != task.task_id:
                        raise WireError(f"result for task {res.task_id}, expected {task.task_id}")
                    out[task.task_id] = res
                    break
        return out

    async def close(self) -> None:
        if self.router is not None and self.worker_task is not None and not self.worker_task.done():
            await self.router.send_multipart([self.worker_id, P.pack_envelope(P.SHUTDOWN)])
            try:
                await asyncio.wait_for(self.worker_task, timeout=5)
            except (asyncio.TimeoutError, Exception):
                self.worker_task.cancel()
        for s in (getattr(self, "_dealer", None), self.router):
            if s is not None:
                s.close(linger=0)
        self.ctx.term()


def corrupt_result(ex: Any, task: P.Task, worker: str, pid: int | None, error: Exception) -> None:
    """A malformed result from a worker or actor: log it and run the task again, once; a
    second malformed result for the same task stops the run rather than go on with bad data.
    `ex` has `on_event`, `pending` (deque), `corrupt` (counts per task id) and `fatal`."""
    ex.on_event("corrupt_message", worker=worker, pid=pid, error=str(error))
    ex.corrupt[task.task_id] += 1
    if ex.corrupt[task.task_id] > 1:
        ex.fatal = RuntimeFailure(
            f"malformed result for client {task.client_id} in round {task.round} twice: {error}"
        )
        return
    ex.pending.appendleft(task)
    ex.on_event(
        "redispatch",
        task=task.task_id,
        round=task.round,
        client=task.client_id,
        reason="corrupt_message",
    )


def make_executor(
    scenario: Any, runner_factory: Any, *, scenario_toml: str, on_event: Any
) -> Executor:
    rt = scenario.runtime
    if rt.executor == "ray":
        from fedsim.runtime.ray_executor import RayExecutor

        return RayExecutor(scenario, scenario_toml, on_event=on_event)
    if rt.transport == "inproc":
        return InprocExecutor(runner_factory())
    from fedsim.runtime.workers import ZmqWorkerExecutor

    return ZmqWorkerExecutor(scenario, scenario_toml, on_event=on_event)
