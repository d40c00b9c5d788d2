"""What every executor shares: the interface, result validation and the worker-pool state machine.

`Executor.submit(task)` returns at once with a future of the task's result, so a scheduler
can keep many tasks outstanding; `run(tasks)` is submit + gather. Every implementation moves
the same wire-format frames, so bytes, simulated time and results do not depend on which
one ran.

`WorkerPool` is the one state machine behind every executor (in process, ZeroMQ workers,
Ray actors): tasks wait in a queue and go to ready workers that have credit left; a lost
worker's tasks go back to the front of the queue (`worker_lost`, `redispatch`); an answer
that fails `validate_result` is logged (`corrupt_message`) and its task run again, once — a
second bad answer for the same task stops the run; an answer from a worker already declared
lost is logged (`late_result`) and ignored. Transports only move frames and report what
happened (`join`, `ready`, `answer`, `lose`); the pool calls their `send` to dispatch.

The queue holds units: one task, or a group of tasks that one client actor trains together
(`runtime.batch_clients`, `submit_group`). A group is formed once, when it is
submitted, and stays whole: it goes to one worker, and a lost worker's group, or a group
with a corrupt answer, is queued again whole (answers for tasks already accepted are
dropped). So every client is trained in the same group whatever worker runs it, worker
counts and failures included: the batched kernels' rounding, and the run's hash, do not
depend on them.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from fedsim.codecs.pipeline import check_tensors
from fedsim.codecs.wire import WireError, unpack_message
from fedsim.errors import RuntimeFailure
from fedsim.runtime import protocol as P

MAX_LOSSES_PER_TASK = 3  # a client that takes its worker down this many times stops the run

EventSink = Callable[..., None]


def _no_events(kind: str, **fields: Any) -> None:
    pass


class Executor(abc.ABC):
    """Runs tasks somewhere and returns one validated result per task."""

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    def submit(self, task: P.Task) -> asyncio.Future:
        """Queue one task; the future resolves to its validated `TaskResult` (or raises
        RuntimeFailure when the run cannot go on). Returns immediately."""

    group_size = 1  # runtime.batch_clients: `run` submits its tasks in groups of this many

    def submit_group(self, tasks: Sequence[P.Task]) -> list[asyncio.Future]:
        """Queue tasks to be trained together as one computation (by one worker); one future
        per task. Executors that cannot batch run them one by one."""
        return [self.submit(t) for t in tasks]

    async def run(self, tasks: Sequence[P.Task]) -> dict[int, P.TaskResult]:
        """Submit + gather; with `group_size` N > 1 the tasks go in groups of N consecutive
        tasks (the same groups for every executor and worker count)."""
        n = max(1, int(self.group_size))
        futures = []
        for at in range(0, len(tasks), n):
            chunk = tasks[at : at + n]
            futures += self.submit_group(chunk) if len(chunk) > 1 else [self.submit(chunk[0])]
        try:
            results = await asyncio.gather(*futures)
        except BaseException:
            for f in futures:  # one failure fails them all: retrieve, do not leak warnings
                if f.done() and not f.cancelled():
                    f.exception()
                else:
                    f.cancel()
            raise
        return {r.task_id: r for r in results}

    @abc.abstractmethod
    async def close(self) -> None: ...


# ---- result validation ----------------------------------------------------------------------


def validate_result(task: P.Task, frames: Sequence[Any]) -> P.TaskResult:
    """The result of `task` in `frames`, accepted only if everything in it decodes.

    Checks the envelope against the task, decodes every tensor of the update (the strict
    decoders refuse negative or non-finite scales, codes out of range and wrong sizes) and the
    client-state message, and the update's `num_samples` and `train_loss`. Non-finite values
    that a float codec carries are the client's own numbers (a diverging client), not a
    corrupt message: the run reports them as `status = "diverged"`.
    Raises WireError (or whatever decoding raises) otherwise, and for an ERROR answer.
    """
    if not isinstance(frames, (list, tuple)) or not frames:
        raise WireError(f"answer is not a list of frames ({type(frames).__name__})")
    env = P.unpack_envelope(frames[0])
    if env["type"] != P.RESULT:
        raise WireError(f"answer of type {env['type']!r} instead of result")
    res = P.parse_result(frames, env)
    if (res.task_id, res.round, res.client_id) != (task.task_id, task.round, task.client_id):
        raise WireError(
            f"result for task {res.task_id} (round {res.round}, client {res.client_id}), "
            f"expected task {task.task_id} (round {task.round}, client {task.client_id})"
        )
    msg = unpack_message(res.update)
    if msg.msg_type != "update":
        raise WireError(f"update message of type {msg.msg_type!r}")
    n, loss = msg.meta.get("num_samples"), msg.meta.get("train_loss")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise WireError(f"update meta num_samples must be a non-negative integer, got {n!r}")
    if not isinstance(loss, (int, float)) or isinstance(loss, bool):
        raise WireError(f"update meta train_loss must be a number, got {loss!r}")
    # every tensor validated as decoding would (float codecs without converting their values),
    # nothing kept: aggregation decodes accepted updates lazily, tensor by tensor
    check_tensors(msg.tensors)
    P.check_state(res.state)
    # the frames' memoryviews keep their buffers alive: no copy needed
    return P.TaskResult(
        res.task_id, res.round, res.client_id, list(res.update), list(res.state), res.meta
    )


# ---- the worker pool ------------------------------------------------------------------------


@dataclass
class Worker:
    key: Hashable  # the transport's handle: a ZeroMQ identity, a Ray actor index
    name: str  # as events name it
    pid: int | None = None
    host: str = ""
    ready: bool = False
    inflight: dict[int, P.Task] = field(default_factory=dict)  # unanswered, in send order
    units: list[tuple[P.Task, ...]] = field(default_factory=list)  # sent, not all answered
    last_seen: float = field(default_factory=time.monotonic)
    tasks_done: int = 0


class WorkerPool:
    """Pending units, workers with credit, loss, corrupt answers: one state machine.

    `send(worker, task)` is the transport's; it returns None when the task is on its way
    or a reason string when the send failed (the worker is then lost and the task re-queued).
    `send_group(worker, tasks)` sends a group to be trained together (default: `send` for
    each). `credit` counts units in flight per worker.
    """

    def __init__(
        self,
        send: Callable[[Worker, P.Task], str | None],
        on_event: EventSink = _no_events,
        *,
        credit: int = 1,
        validate: Callable[[P.Task, Sequence[Any]], P.TaskResult] = validate_result,
        send_group: Callable[[Worker, tuple[P.Task, ...]], str | None] | None = None,
    ):
        self.send = send
        self.send_group = send_group
        self.on_event = on_event
        self.credit = credit
        self.validate = validate
        self.workers: dict[Hashable, Worker] = {}
        self.lost: dict[Hashable, Worker] = {}
        self.pending: collections.deque[tuple[P.Task, ...]] = collections.deque()
        self.futures: dict[int, asyncio.Future] = {}
        self.corrupt: collections.Counter[int] = collections.Counter()
        self.losses: collections.Counter[int] = collections.Counter()
        self.fatal: BaseException | None = None
        self._starved_since: float | None = None

    # ---- tasks in, results out ------------------------------------------------------------
    def submit(self, task: P.Task) -> asyncio.Future:
        return self.submit_group([task])[0]

    def submit_group(self, tasks: Sequence[P.Task]) -> list[asyncio.Future]:
        """One unit: the tasks go to one worker together (trained as one computation)."""
        loop = asyncio.get_running_loop()
        futs = []
        for task in tasks:
            fut = loop.create_future()
            futs.append(fut)
            if self.fatal is not None:
                fut.set_exception(self.fatal)
                continue
            if task.task_id in self.futures:
                raise ValueError(f"task {task.task_id} is already outstanding")
            self.futures[task.task_id] = fut
        if self.fatal is None and tasks:
            self.pending.append(tuple(tasks))
            self.dispatch()
        return futs

    def dispatch(self) -> None:
        """Queue order to ready workers, one unit each per pass, up to `credit` in flight."""
        ready = [w for w in self.workers.values() if w.ready]
        ready.sort(key=lambda w: w.name)
        for _ in range(self.credit):
            for w in ready:
                self._drop_abandoned()
                if not self.pending or self.fatal is not None:
                    return
                if w.key not in self.workers or len(w.units) >= self.credit:
                    continue
                unit = self.pending[0]
                if any(t.task_id in w.inflight for t in unit):
                    continue  # still answering this group's first run: another worker takes it
                self.pending.popleft()
                w.units.append(unit)
                for t in unit:
                    w.inflight[t.task_id] = t
                if len(unit) > 1 and self.send_group is not None:
                    why = self.send_group(w, unit)
                else:
                    why = None
                    for t in unit:
                        why = self.send(w, t)
                        if why is not None:
                            break
                if why is not None:
                    self.lose(w.key, f"send failed: {why}")

    def _live(self, task: P.Task) -> bool:
        fut = self.futures.get(task.task_id)
        return fut is not None and not fut.done()

    def _drop_abandoned(self) -> None:
        """Units whose futures were all cancelled (the scheduler gave up on them) or answered
        are not sent."""
        while self.pending:
            if any(self._live(t) for t in self.pending[0]):
                return
            for t in self.pending.popleft():
                fut = self.futures.get(t.task_id)
                if fut is not None and fut.done():
                    self.futures.pop(t.task_id)

    def answer(self, key: Hashable, frames: Sequence[Any], task: P.Task | None = None) -> None:
        """A worker's answer: `task` is the call it answers when the transport knows it,
        else the worker's oldest task in flight (workers answer in order)."""
        w = self.workers.get(key)
        if w is None:
            gone = self.lost.get(key)
            if gone is not None:
                self.on_event("late_result", worker=gone.name, pid=gone.pid)
            return
        w.last_seen = time.monotonic()
        if task is None:
            task = next(iter(w.inflight.values()), None)
        if task is None or task.task_id not in w.inflight:
            self.on_event("corrupt_message", worker=w.name, pid=w.pid, error="unsolicited answer")
            return
        if not self._live(task):  # answered already (a group run again whole) or abandoned
            self._answered(w, task)
            self.dispatch()
            return
        if _is_error(frames):
            env = P.unpack_envelope(frames[0])
            where = f"on {w.name} (pid {w.pid}{', ' + w.host if w.host else ''})"
            self.fail(
                RuntimeFailure(
                    f"client {task.client_id} failed in round {task.round} {where}: "
                    f"{env.get('message')}"
                )
            )
            return
        unit = self._answered(w, task)
        try:
            result = self.validate(task, frames)
        except Exception as e:  # anything that does not decode is a corrupt message
            self._corrupt(w, task, unit, e)
        else:
            w.tasks_done += 1
            # who ran it, for the record (not part of the experiment's outputs)
            result = replace(result, meta={**result.meta, "worker": w.name, "worker_pid": w.pid})
            fut = self.futures.pop(task.task_id, None)
            if fut is not None and not fut.done():
                fut.set_result(result)
        self.dispatch()

    def _answered(self, w: Worker, task: P.Task) -> tuple[P.Task, ...]:
        """Take `task` off the worker; its unit leaves once every task of it is answered."""
        del w.inflight[task.task_id]
        unit = next(u for u in w.units if any(t.task_id == task.task_id for t in u))
        if not any(t.task_id in w.inflight for t in unit):
            w.units.remove(unit)
        return unit

    def _corrupt(
        self, w: Worker, task: P.Task, unit: tuple[P.Task, ...], error: BaseException
    ) -> None:
        """Log it and run the task again (in its whole group), once; a second malformed
        result for the same task stops the run rather than go on with bad data."""
        self.on_event(
            "corrupt_message", worker=w.name, pid=w.pid, task=task.task_id, error=str(error)
        )
        self.corrupt[task.task_id] += 1
        if self.corrupt[task.task_id] > 1:
            self.fail(
                RuntimeFailure(
                    f"malformed result for client {task.client_id} in round {task.round} "
                    f"twice: {error}"
                )
            )
            return
        self._requeue(unit, [task], "corrupt_message")

    def _requeue(self, unit: tuple[P.Task, ...], tasks: Sequence[P.Task], reason: str) -> None:
        """`unit` back at the front of the queue, whole; one event per task of it re-run."""
        self.pending.appendleft(unit)
        for task in tasks:
            self.on_event(
                "redispatch",
                task=task.task_id,
                round=task.round,
                client=task.client_id,
                reason=reason,
            )

    # ---- workers ----------------------------------------------------------------------------
    def join(self, key: Hashable, name: str, *, pid: int | None = None, host: str = "", **extra):
        if key in self.workers:
            return self.workers[key]
        w = self.workers[key] = Worker(key, name, pid, host)
        self.on_event("worker_joined", worker=name, pid=pid, host=host, **extra)
        return w

    def ready(self, key: Hashable) -> None:
        w = self.workers.get(key)
        if w is not None:
            w.ready = True
            w.last_seen = time.monotonic()
            self.dispatch()

    def seen(self, key: Hashable) -> None:
        w = self.workers.get(key)
        if w is not None:
            w.last_seen = time.monotonic()

    def lose(self, key: Hashable, why: str) -> Worker | None:
        """The worker is gone: its units go back to the front of the queue, in order, each
        whole (its tasks already answered are run again with it, their answers dropped)."""
        w = self.workers.pop(key, None)
        if w is None:
            return None
        self.lost[key] = w
        self.on_event("worker_lost", worker=w.name, pid=w.pid, host=w.host, reason=why)
        for unit in reversed(w.units):
            lost = [t for t in unit if t.task_id in w.inflight and self._live(t)]
            for task in lost:
                self.losses[task.task_id] += 1
                if self.losses[task.task_id] >= MAX_LOSSES_PER_TASK:
                    self.fail(
                        RuntimeFailure(
                            f"client {task.client_id} in round {task.round} lost its worker "
                            f"{MAX_LOSSES_PER_TASK} times; last: {why}"
                        )
                    )
                    break
            if self.fatal is not None:
                break
            if lost:
                self._requeue(unit, lost, "worker_lost")
        w.inflight.clear()
        w.units.clear()
        self.dispatch()
        return w

    # ---- the run as a whole -------------------------------------------------------------------
    def fail(self, exc: BaseException) -> None:
        """Stop: every outstanding future (and any later submit) raises exc."""
        if self.fatal is None:
            self.fatal = exc
        for fut in self.futures.values():
            if not fut.done():
                fut.set_exception(self.fatal)
        self.futures.clear()
        self.pending.clear()

    def starved(self, now: float, wait: float) -> bool:
        """True once tasks have waited `wait` seconds with no worker in the pool."""
        if not self.pending or self.workers:
            self._starved_since = None
            return False
        if self._starved_since is None:
            self._starved_since = now
        return now - self._starved_since > wait

    def cancel_all(self) -> None:
        for fut in self.futures.values():
            fut.cancel()
        self.futures.clear()
        self.pending.clear()


def _is_error(frames: Sequence[Any]) -> bool:
    try:
        return P.unpack_envelope(frames[0])["type"] == P.ERROR
    except Exception:
        return False


class PoolExecutor(Executor):
    """An executor whose workers are managed by one `WorkerPool`: submit is the pool's, and
    a watch loop runs `tick()` every `interval` seconds and stops the run when tasks have
    waited `starve_wait` seconds with no worker."""

    def __init__(
        self,
        on_event: EventSink,
        *,
        credit: int = 1,
        interval: float = 1.0,
        starve_wait: float = 60.0,
        group_size: int = 1,
    ):
        self.on_event = on_event
        self.group_size = max(1, int(group_size))
        self.pool = WorkerPool(self._send, on_event, credit=credit, send_group=self._send_group)
        self.interval = interval
        self.starve_wait = starve_wait
        self._bg: list[asyncio.Task] = []

    def submit(self, task: P.Task) -> asyncio.Future:
        return self.pool.submit(task)

    def submit_group(self, tasks: Sequence[P.Task]) -> list[asyncio.Future]:
        return self.pool.submit_group(tasks)

    @abc.abstractmethod
    def _send(self, worker: Worker, task: P.Task) -> str | None: ...

    @abc.abstractmethod
    def _send_group(self, worker: Worker, tasks: tuple[P.Task, ...]) -> str | None:
        """Send tasks that the worker trains together (one answer per task)."""

    def _tick(self) -> None:
        """Periodic transport work (liveness, heartbeats)."""

    def _starved_message(self) -> str:
        return f"no worker left: waited {self.starve_wait:.0f}s (runtime.worker_wait)"

    def _background(self, coro) -> None:
        self._bg.append(asyncio.ensure_future(coro))

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self._tick()
            if self.pool.starved(time.monotonic(), self.starve_wait):
                self.pool.fail(RuntimeFailure(self._starved_message()))

    async def _stop_background(self) -> None:
        for t in self._bg:
            t.cancel()
        for t in self._bg:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._bg.clear()
        self.pool.cancel_all()
