"""Client execution on a Ray cluster (`runtime.executor = "ray"`, docs/scale-out.md).

The coordinator is the Ray driver. It starts a pool of client actors (one per
`runtime.workers`, or as many as the cluster's CPUs/GPUs fit at the per-client resources);
each actor validates the resolved scenario TOML (`validate_doc`, exactly as a ZeroMQ
worker does on SETUP) and builds its own `ClientRunner` with the same torch thread count.

What crosses Ray is the runtime's wire format and nothing else of fedsim's: a task goes out
as its envelope frame, its payload frames (the encoded model, put into Ray's object store
once per round and shared by that round's tasks) and its state frames, all `bytes`; the
actor answers with the result frames (`protocol.result_frames`) as a list of `bytes`. The
coordinator checks the answer's type, parses the envelope and validates the update and state
messages with `unpack_message` before it accepts a result, as `workers.py` does. Ray itself
serialises arguments and return values with pickle between the nodes of a cluster: cluster
nodes are trusted (Ray's own security model); fedsim adds no objects of its own to that
channel. Per-client state travels with the task, so any actor can train any client and the
result does not depend on where Ray schedules it.

Failures of the machinery: an actor whose process or node dies (RayActorError,
WorkerCrashedError, NodeDiedError, lost objects, ...) is lost — `worker_lost` is logged, a
replacement actor is started (Ray places it wherever resources are free) and the task goes
back to the queue (`redispatch`) to be re-run from the same inputs, so the experiment does
not change. A malformed answer is re-run once (`corrupt_message`). An exception raised by
client training itself is the experiment's error and stops the run, as with the workers.
"""

from __future__ import annotations

import asyncio
import collections
import math
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fedsim.codecs.wire import WireError, unpack_message
from fedsim.errors import RuntimeFailure
from fedsim.runtime import protocol as P
from fedsim.runtime.executors import Executor, corrupt_result

DEFAULT_LOCAL_ACTORS = 2  # a local Ray instance (no address) gets this many CPUs by default
MAX_LOSSES_PER_TASK = 3  # a client that kills its actor this many times stops the run
MAX_SETUP_LOSSES = 5  # actors dying before they are ready, in a row
CALLS_PER_ACTOR = 2  # queued on each actor (it runs them one at a time): hides round trips


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RuntimeFailure(
            'runtime.executor = "ray" needs Ray: pip install "fedsim[ray]" (ray>=2.9)'
        ) from None
    return ray


# ---- the actor side ---------------------------------------------------------------------


class ClientActor:
    """Body of the Ray actor (wrapped with `ray.remote` when the executor starts).

    Built from the resolved scenario TOML text only; every method takes and returns `bytes`
    frames of the runtime protocol.
    """

    def __init__(self, scenario_toml: str, threads: int, index: int, fault: str | None = None):
        self.index = index
        self.fault = _parse_fault(fault)
        self.tasks_seen = 0
        self.error: str | None = None
        self.runner = None
        # the actor's process has not loaded torch yet: fix its thread pools as a ZeroMQ
        # worker's environment does (Ray would otherwise set OMP_NUM_THREADS = num_cpus)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        try:
            import tomllib
            import torch

            from fedsim.runtime.client import ClientRunner
            from fedsim.scenario import validate_doc

            torch.set_num_threads(threads)
            scenario = validate_doc(tomllib.loads(scenario_toml))
            self.runner = ClientRunner(scenario)
        except Exception as e:  # reported through ready(): the coordinator decides
            self.error = f"{type(e).__name__}: {e}"

    def ready(self) -> list[bytes]:
        import socket

        if self.error is not None:
            return [P.pack_envelope(P.ERROR, message=self.error)]
        return [P.pack_envelope(P.READY, pid=os.getpid(), host=socket.gethostname())]

    def run(self, envelope: bytes, payload: list[bytes], state: list[bytes]) -> list[bytes]:
        frames = [envelope, *payload, *state]
        env = P.unpack_envelope(frames[0])
        task = P.parse_task(frames, env)
        self.tasks_seen += 1
        try:
            result = self.runner.run(task)
        except Exception as e:
            return [P.pack_envelope(P.ERROR, task=task.task_id, message=f"{type(e).__name__}: {e}")]
        out = [bytes(f) for f in P.result_frames(result)]
        if self.fault == ("kill", self.tasks_seen):
            os.kill(os.getpid(), signal.SIGKILL)
        if self.fault == ("corrupt", self.tasks_seen):
            out = [out[0], b"\x93garbage", *out[2:]]
        return out


def _parse_fault(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    kind, _, n = spec.partition(":")
    return kind, int(n)


def _fault_for(index: int) -> str | None:
    """Test hook, as for the ZeroMQ workers: FEDSIM_FAULT="kill:I:N" makes actor I SIGKILL
    its own process on its N-th task (before answering); "corrupt:I:N" makes it answer one
    malformed update. Actors started as replacements get new indices, so it fires once."""
    parts = os.environ.get("FEDSIM_FAULT", "").split(":")
    if len(parts) != 3 or parts[1] != str(index):
        return None
    return f"{parts[0]}:{parts[2]}"


# ---- the coordinator side -----------------------------------------------------------------


@dataclass
class ActorInfo:
    index: int
    handle: Any
    ready_fut: asyncio.Future | None = None  # the ready() call, until it answers
    inflight: dict[asyncio.Future, P.Task] = field(default_factory=dict)  # in call order
    pid: int | None = None
    host: str = ""
    tasks_done: int = 0

    @property
    def ready(self) -> bool:
        return self.ready_fut is None

    @property
    def name(self) -> str:
        return f"ray-actor-{self.index}"


class RayExecutor(Executor):
    def __init__(
        self,
        scenario: Any,
        scenario_toml: str,
        *,
        on_event: Callable[..., None] = lambda kind, **f: None,
        address: str | None = None,
        actors: int | None = None,
        num_cpus_per_client: float | None = None,
        num_gpus_per_client: float | None = None,
    ):
        rt = scenario.runtime
        self.scenario = scenario
        self.scenario_toml = scenario_toml
        self.on_event = on_event
        self.address = address if address is not None else getattr(rt, "ray_address", None)
        self.cpus = float(
            num_cpus_per_client
            if num_cpus_per_client is not None
            else getattr(rt, "ray_num_cpus_per_client", 1.0)
        )
        self.gpus = float(
            num_gpus_per_client
            if num_gpus_per_client is not None
            else getattr(rt, "ray_num_gpus_per_client", 0.0)
        )
        self.n_actors = actors if actors is not None else (rt.workers or None)
        self.threads = rt.torch_threads
        self.heartbeat = rt.heartbeat_interval
        self.wait_for_actors = rt.worker_wait
        self.ray: Any = None
        self.owns_ray = False
        self.actors: dict[int, ActorInfo] = {}
        self.next_index = 0
        self.pending: collections.deque[P.Task] = collections.deque()
        self.results: dict[int, P.TaskResult] = {}
        self.corrupt: dict[int, int] = collections.defaultdict(int)
        self.losses: dict[int, int] = collections.defaultdict(int)
        self.setup_losses = 0
        self.fatal: BaseException | None = None
        self._payload_refs: dict[int, tuple[Any, Any]] = {}
        self._actor_cls: Any = None

    # ---- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        ray = self.ray = import_ray()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "configure_logging": True,
                "logging_level": "warning",
            }
            if self.address:
                kwargs["address"] = self.address
            else:
                n = self.n_actors or DEFAULT_LOCAL_ACTORS
                kwargs["num_cpus"] = max(1, math.ceil(n * self.cpus))
            try:
                ray.init(**kwargs)
            except Exception as e:
                where = self.address or "a local instance"
                raise RuntimeFailure(
                    f"could not start or reach Ray ({where}): {type(e).__name__}: {e}"
                ) from None
            self.owns_ray = True
        resources = ray.cluster_resources()
        if self.n_actors is None:
            fit = resources.get("CPU", 0.0) / self.cpus if self.cpus > 0 else math.inf
            if self.gpus > 0:
                fit = min(fit, resources.get("GPU", 0.0) / self.gpus)
            self.n_actors = max(1, int(fit) if math.isfinite(fit) else DEFAULT_LOCAL_ACTORS)
        self.on_event(
            "ray_cluster",
            address=self.address or "local",
            cpus=resources.get("CPU", 0.0),
            gpus=resources.get("GPU", 0.0),
            nodes=len([n for n in ray.nodes() if n.get("Alive")]),
            actors=self.n_actors,
            cpus_per_client=self.cpus,
            gpus_per_client=self.gpus,
        )
        self._actor_cls = ray.remote(ClientActor).options(
            num_cpus=self.cpus,
            num_gpus=self.gpus,
            max_restarts=0,  # a dead actor is replaced by the executor, not by Ray
            max_task_retries=0,  # ...and its task re-dispatched by the executor
        )
        for _ in range(self.n_actors):
            self._spawn()

    def _spawn(self) -> ActorInfo:
        index = self.next_index
        self.next_index += 1
        handle = self._actor_cls.remote(self.scenario_toml, self.threads, index, _fault_for(index))
        a = ActorInfo(index, handle)
        a.ready_fut = self._future(handle.ready.remote())
        self.actors[index] = a
        self.on_event("worker_spawned", index=index, worker=a.name, executor="ray")
        return a

    @staticmethod
    def _future(ref: Any) -> asyncio.Future:
        return asyncio.wrap_future(ref.future())

    async def close(self) -> None:
        ray = self.ray
        if ray is None:
            return
        for a in list(self.actors.values()):
            for f in [a.ready_fut, *a.inflight]:
                if f is not None and not f.done():
                    f.cancel()
            try:
                ray.kill(a.handle, no_restart=True)
            except Exception:
                pass
        self.actors.clear()
        self._payload_refs.clear()
        if self.owns_ray and ray.is_initialized():
            ray.shutdown()
            self.owns_ray = False

    # ---- the round ----------------------------------------------------------------------
    async def run(self, tasks: Sequence[P.Task]) -> dict[int, P.TaskResult]:
        self.pending.extend(tasks)
        wanted = {t.task_id for t in tasks}
        no_actor_since: float | None = None
        try:
            while not wanted <= set(self.results):
                if self.fatal is not None:
                    raise self.fatal
                self._dispatch()
                if self.pending and not any(a.ready for a in self.actors.values()):
                    no_actor_since = no_actor_since or time.monotonic()
                    if time.monotonic() - no_actor_since > self.wait_for_actors:
                        raise RuntimeFailure(
                            f"no Ray actor ready: waited {self.wait_for_actors:.0f}s "
                            f"(runtime.worker_wait) for the cluster to place one with "
                            f"{self.cpus:g} CPU and {self.gpus:g} GPU per client "
                            f"(cluster has {self.ray.available_resources()} available)"
                        )
                else:
                    no_actor_since = None
                futs = {f: a for a in self.actors.values() for f in [a.ready_fut, *a.inflight] if f}
                if not futs:
                    await asyncio.sleep(self.heartbeat)
                    continue
                done, _ = await asyncio.wait(
                    futs, timeout=self.heartbeat, return_when=asyncio.FIRST_COMPLETED
                )
                for f in done:
                    self._handle(futs[f], f)
            if self.fatal is not None:
                raise self.fatal
        finally:
            self._payload_refs.clear()
        return {tid: self.results.pop(tid) for tid in wanted}

    def _payload_ref(self, task: P.Task) -> Any:
        """The round's encoded model goes into the object store once, shared by its tasks."""
        key = id(task.payload)
        hit = self._payload_refs.get(key)
        if hit is None or hit[0] is not task.payload:
            hit = (task.payload, self.ray.put([bytes(f) for f in task.payload]))
            self._payload_refs[key] = hit
        return hit[1]

    def _dispatch(self) -> None:
        """Tasks in queue order to ready actors, one call each per pass, up to
        CALLS_PER_ACTOR queued on an actor (credit-based, as with the ZeroMQ workers)."""
        ready = sorted((a for a in self.actors.values() if a.ready), key=lambda a: a.index)
        for _ in range(CALLS_PER_ACTOR):
            for a in ready:
                if not self.pending:
                    return
                if len(a.inflight) >= CALLS_PER_ACTOR:
                    continue
                task = self.pending.popleft()
                frames = P.task_frames(task)
                ref = a.handle.run.remote(
                    bytes(frames[0]),
                    self._payload_ref(task),
                    [bytes(f) for f in frames[1 + len(task.payload) :]],
                )
                a.inflight[self._future(ref)] = task

    def _handle(self, a: ActorInfo, fut: asyncio.Future) -> None:
        if self.actors.get(a.index) is not a:
            return  # lost meanwhile: its tasks are already back in the queue
        exc = fut.exception() if not fut.cancelled() else RuntimeFailure("cancelled")
        if fut is a.ready_fut:
            if exc is not None:
                self._failed(a, exc, None)
            else:
                self._ready(a, fut.result())
        elif fut in a.inflight:
            if exc is not None:
                self._failed(a, exc, a.inflight[fut])  # _lose re-queues every call in flight
            else:
                self._result(a, a.inflight.pop(fut), fut.result())

    def _failed(self, a: ActorInfo, exc: BaseException, task: P.Task | None) -> None:
        ray_exc = self.ray.exceptions
        if isinstance(exc, ray_exc.RayTaskError) or not isinstance(exc, ray_exc.RayError):
            # our own code raised inside the actor (it catches training errors itself), or
            # something outside Ray broke: not a lost machine
            where = f"client {task.client_id} in round {task.round}" if task else a.name
            self.fatal = RuntimeFailure(f"Ray actor failed ({where}): {type(exc).__name__}: {exc}")
            return
        self._lose(a, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

    def _lose(self, a: ActorInfo, why: str) -> None:
        if self.actors.pop(a.index, None) is None:
            return
        try:
            self.ray.kill(a.handle, no_restart=True)
        except Exception:
            pass
        self.on_event("worker_lost", worker=a.name, pid=a.pid, host=a.host, reason=why)
        if not a.ready:
            self.setup_losses += 1
            if self.setup_losses >= MAX_SETUP_LOSSES:
                self.fatal = RuntimeFailure(
                    f"{MAX_SETUP_LOSSES} Ray actors in a row died before they were ready; last: {why}"
                )
                return
        for fut, task in reversed(list(a.inflight.items())):
            if not fut.done():
                fut.cancel()
            self.losses[task.task_id] += 1
            if self.losses[task.task_id] >= MAX_LOSSES_PER_TASK:
                self.fatal = RuntimeFailure(
                    f"client {task.client_id} in round {task.round} lost its Ray actor "
                    f"{MAX_LOSSES_PER_TASK} times; last: {why}"
                )
                return
            self.pending.appendleft(task)
            self.on_event(
                "redispatch",
                task=task.task_id,
                round=task.round,
                client=task.client_id,
                reason="worker_lost",
            )
        self._spawn()

    def _ready(self, a: ActorInfo, frames: Any) -> None:
        try:
            env = P.unpack_envelope(_frame_list(frames)[0])
        except WireError as e:
            self._lose(a, f"malformed ready answer: {e}")
            return
        if env["type"] == P.ERROR:
            self.fatal = RuntimeFailure(
                f"Ray actor could not build its client runner: {env.get('message')}"
            )
            return
        if env["type"] != P.READY:
            self._lose(a, f"said {env['type']!r} instead of ready")
            return
        a.ready_fut = None
        a.pid = env.get("pid") if isinstance(env.get("pid"), int) else None
        a.host = str(env.get("host", ""))
        self.setup_losses = 0
        self.on_event("worker_joined", worker=a.name, pid=a.pid, host=a.host, executor="ray")

    def _result(self, a: ActorInfo, task: P.Task, frames: Any) -> None:
        try:
            bufs = _frame_list(frames)
            env = P.unpack_envelope(bufs[0])
            if env["type"] == P.ERROR:
                self.fatal = RuntimeFailure(
                    f"client {task.client_id} failed in round {task.round} on {a.name} "
                    f"(pid {a.pid}, {a.host}): {env.get('message')}"
                )
                return
            if env["type"] != P.RESULT:
                raise WireError(f"answer of type {env['type']!r} instead of result")
            res = P.parse_result(bufs, env)
            if res.task_id != task.task_id:
                raise WireError(f"result for task {res.task_id}, actor holds {task.task_id}")
            unpack_message(res.update)  # validate before accepting
            if res.state:
                P.unpack_state(res.state)
        except WireError as e:
            corrupt_result(self, task, a.name, a.pid, e)
            return
        self.results[res.task_id] = P.TaskResult(
            res.task_id, res.round, res.client_id, list(res.update), list(res.state), res.meta
        )
        a.tasks_done += 1


def _frame_list(frames: Any) -> list[bytes]:
    """An actor's answer must be a non-empty list of bytes frames; anything else is corrupt."""
    if not isinstance(frames, list) or not frames or not all(isinstance(f, bytes) for f in frames):
        raise WireError(f"answer is not a list of bytes frames ({type(frames).__name__})")
    return frames
