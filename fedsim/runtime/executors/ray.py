"""Client execution on a Ray cluster (`runtime.executor = "ray"`, docs/scale-out.md).

The coordinator is the Ray driver. It starts a pool of client actors (one per
`runtime.workers`, or as many as the cluster's CPUs/GPUs fit at the per-client resources);
each actor validates the resolved scenario TOML (`validate_doc`, exactly as a ZeroMQ
worker does on SETUP) and builds its own `ClientRunner` with the same torch thread count.

What crosses Ray is the runtime's wire format and nothing else of fedsim's: a task goes out
as its envelope frame, its payload frames (the encoded model, put into Ray's object store
once and shared by the tasks that carry it) and its state frames, all `bytes`; the actor
answers with the frames `actor.answer_task` makes, as a list of `bytes` (a group of tasks
trained together, `runtime.batch_clients`, is one call, `run_group`, answered with one such
list per task). The coordinator
validates the answer exactly as for every executor (`validate_result`). Ray itself
serialises arguments and return values with pickle between the nodes of a cluster: cluster
nodes are trusted (Ray's own security model); fedsim adds no objects of its own to that
channel. Per-client state travels with the task, so any actor can train any client.

Failures of the machinery: an actor whose process or node dies (RayActorError,
WorkerCrashedError, NodeDiedError, lost objects, ...) is lost — the `WorkerPool` re-queues
its calls, and a replacement actor is started wherever Ray finds resources. An exception
raised by client training itself is the experiment's error and stops the run.

A local Ray instance (no `runtime.ray_address`) belongs to the run: a watchdog process
(ray_watchdog.py) ends whatever of it is left when the coordinator closes or dies.
"""

from __future__ import annotations

import asyncio
import collections
import math
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from fedsim.errors import RuntimeFailure
from fedsim.runtime import protocol as P
from fedsim.runtime.device import PINNED_ENV
from fedsim.runtime.executors.actor import (
    Fault,
    answer_task,
    answer_tasks,
    build_runner,
    fault_for,
)
from fedsim.runtime.executors.base import PoolExecutor, Worker

DEFAULT_LOCAL_ACTORS = 2  # a local Ray instance (no address) gets this many CPUs by default
MAX_SETUP_LOSSES = 5  # actors dying before they are ready, in a row
CALLS_PER_ACTOR = 2  # queued on each actor (it runs them one at a time): hides round trips
PAYLOADS_KEPT = 8  # encoded models kept in the object store for tasks still to come


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

    def __init__(self, scenario_toml: str, threads: int, fault: Fault | None = None):
        self.fault = fault
        self.error: str | None = None
        self.runner = None
        # the actor's process has not loaded torch yet: fix its thread pools as a ZeroMQ
        # worker's environment does (Ray would otherwise set OMP_NUM_THREADS = num_cpus)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        # Ray pins the actor to its reserved GPU(s) through CUDA_VISIBLE_DEVICES
        os.environ[PINNED_ENV] = "1"
        try:
            self.runner = build_runner(scenario_toml, threads)
        except Exception as e:  # reported through ready(): the coordinator decides
            self.error = f"{type(e).__name__}: {e}"

    def ready(self) -> list[bytes]:
        if self.error is not None:
            return [P.pack_envelope(P.ERROR, message=self.error)]
        return [P.pack_envelope(P.READY, pid=os.getpid(), host=socket.gethostname())]

    def run(self, envelope: bytes, payload: list[bytes], state: list[bytes]) -> list[bytes]:
        frames = answer_task(self.runner, [envelope, *payload, *state], self.fault)
        return [bytes(f) for f in frames]

    def run_group(
        self, envelopes: list[bytes], states: list[list[bytes]], which: list[int], *payloads
    ) -> list[list[bytes]]:
        """Tasks trained together (`runtime.batch_clients`): task i is `envelopes[i]`, the
        payload `payloads[which[i]]` (each distinct payload passed once, as a top-level
        argument so Ray resolves it) and `states[i]`; one answer per task, in order."""
        group = [
            [env, *payloads[k], *st] for env, k, st in zip(envelopes, which, states, strict=True)
        ]
        outs = answer_tasks(self.runner, group, self.fault)
        return [[bytes(f) for f in frames] for frames in outs]


# ---- the local instance's watchdog -------------------------------------------------------


def start_watchdog(context: Any) -> subprocess.Popen | None:
    """A process that ends the local Ray instance's processes when our pipe to it closes:
    at `close()`, or when the coordinator dies, even by SIGKILL (ray_watchdog.py)."""
    try:
        session = Path(context.address_info["session_dir"]).name
    except (AttributeError, KeyError, TypeError):
        return None
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("ray_watchdog.py")), session],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # a signal to our process group does not end it first
    )


def stop_watchdog(proc: subprocess.Popen | None) -> None:
    """Close its pipe: it sweeps what Ray left (agents) and exits."""
    if proc is None:
        return
    try:
        proc.stdin.close()
        proc.wait(timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()


# ---- the coordinator side -----------------------------------------------------------------


class RayExecutor(PoolExecutor):
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
        super().__init__(
            on_event,
            credit=CALLS_PER_ACTOR,
            interval=rt.heartbeat_interval,
            starve_wait=rt.worker_wait,
            group_size=rt.batch_clients,
        )
        self.scenario = scenario
        self.scenario_toml = scenario_toml
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
        self.ray: Any = None
        self.owns_ray = False
        self.handles: dict[int, Any] = {}  # actor index -> handle, starting or in the pool
        self.calls: dict[int, set] = collections.defaultdict(set)  # futures in flight
        self.next_index = 0
        self.setup_losses = 0
        self.closing = False
        self._payloads: collections.OrderedDict[int, tuple[Any, Any]] = collections.OrderedDict()
        self._actor_cls: Any = None
        self._watchdog: subprocess.Popen | None = None

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
                context = ray.init(**kwargs)
            except Exception as e:
                where = self.address or "a local instance"
                raise RuntimeFailure(
                    f"could not start or reach Ray ({where}): {type(e).__name__}: {e}"
                ) from None
            self.owns_ray = True
            if not self.address:
                self._watchdog = start_watchdog(context)
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
            max_task_retries=0,  # ...and its task re-dispatched by the pool
        )
        for _ in range(self.n_actors):
            self._spawn()
        self._background(self._watch())

    def _spawn(self) -> None:
        """A new actor; it joins the pool when its ready() answers. Replacements get new
        indices, so test faults (by index) fire once."""
        index = self.next_index
        self.next_index += 1
        handle = self._actor_cls.remote(self.scenario_toml, self.threads, fault_for(index))
        self.handles[index] = handle
        self.on_event("worker_spawned", index=index, worker=_name(index), executor="ray")
        fut = self._future(handle.ready.remote())
        self.calls[index].add(fut)
        fut.add_done_callback(partial(self._on_ready, index))

    @staticmethod
    def _future(ref: Any) -> asyncio.Future:
        return asyncio.wrap_future(ref.future())

    async def close(self) -> None:
        self.closing = True
        await self._stop_background()
        ray = self.ray
        if ray is None:
            return
        for index, handle in list(self.handles.items()):
            self._drop(index, handle)
        self._payloads.clear()
        if self.owns_ray and ray.is_initialized():
            ray.shutdown()
            self.owns_ray = False
        stop_watchdog(self._watchdog)
        self._watchdog = None

    def _drop(self, index: int, handle: Any) -> None:
        for f in self.calls.pop(index, ()):
            f.cancel()
        self.handles.pop(index, None)
        try:
            self.ray.kill(handle, no_restart=True)
        except Exception:
            pass

    def _starved_message(self) -> str:
        return (
            f"no Ray actor ready: waited {self.starve_wait:.0f}s (runtime.worker_wait) for the "
            f"cluster to place one with {self.cpus:g} CPU and {self.gpus:g} GPU per client "
            f"(cluster has {self.ray.available_resources()} available)"
        )

    # ---- actors starting ----------------------------------------------------------------
    def _on_ready(self, index: int, fut: Any) -> None:
        self.calls[index].discard(fut)
        if self.closing or fut.cancelled() or index not in self.handles:
            return
        exc = fut.exception()
        if exc is not None:
            if self._ours(exc):
                self.pool.fail(RuntimeFailure(f"Ray actor failed ({_name(index)}): {exc}"))
            else:
                self._setup_lost(index, _reason(exc))
            return
        frames = fut.result()
        try:
            env = P.unpack_envelope(frames[0])
            if env["type"] == P.ERROR:
                self.pool.fail(
                    RuntimeFailure(
                        f"Ray actor could not build its client runner: {env.get('message')}"
                    )
                )
                return
            if env["type"] != P.READY:
                raise ValueError(f"said {env['type']!r} instead of ready")
            pid, host = P.parse_hello(env)
        except Exception as e:
            self._setup_lost(index, f"malformed ready answer: {e}")
            return
        self.setup_losses = 0
        self.pool.join(index, _name(index), pid=pid, host=host, executor="ray")
        self.pool.ready(index)

    def _setup_lost(self, index: int, why: str) -> None:
        self._drop(index, self.handles.get(index))
        self.on_event("worker_lost", worker=_name(index), pid=None, host="", reason=why)
        self.setup_losses += 1
        if self.setup_losses >= MAX_SETUP_LOSSES:
            self.pool.fail(
                RuntimeFailure(
                    f"{MAX_SETUP_LOSSES} Ray actors in a row died before they were ready; last: {why}"
                )
            )
            return
        self._spawn()

    # ---- calls ----------------------------------------------------------------------------
    def _send(self, worker: Worker, task: P.Task) -> str | None:
        frames = P.task_frames(task)
        ref = self.handles[worker.key].run.remote(
            bytes(frames[0]),
            self._payload_ref(task),
            [bytes(f) for f in frames[1 + len(task.payload) :]],
        )
        fut = self._future(ref)
        self.calls[worker.key].add(fut)
        fut.add_done_callback(partial(self._on_answer, worker.key, task))
        return None

    def _send_group(self, worker: Worker, tasks: tuple[P.Task, ...]) -> str | None:
        refs: list[Any] = []
        which = []
        for task in tasks:
            ref = self._payload_ref(task)
            if not any(r is ref for r in refs):
                refs.append(ref)
            which.append(next(i for i, r in enumerate(refs) if r is ref))
        envelopes, states = [], []
        for task in tasks:
            frames = P.task_frames(task)
            envelopes.append(bytes(frames[0]))
            states.append([bytes(f) for f in frames[1 + len(task.payload) :]])
        ref = self.handles[worker.key].run_group.remote(envelopes, states, which, *refs)
        fut = self._future(ref)
        self.calls[worker.key].add(fut)
        fut.add_done_callback(partial(self._on_group_answer, worker.key, tasks))
        return None

    def _on_group_answer(self, index: int, tasks: tuple[P.Task, ...], fut: Any) -> None:
        if fut.cancelled() or fut.exception() is not None:
            self._on_answer(index, tasks[0], fut)  # a lost actor loses the whole group
            return
        self.calls[index].discard(fut)
        if self.closing:
            return
        outs = fut.result()
        for i, task in enumerate(tasks):  # a missing answer is a malformed one
            self.pool.answer(index, outs[i] if i < len(outs) else [], task)

    def _payload_ref(self, task: P.Task) -> Any:
        """An encoded model goes into the object store once, shared by the tasks carrying it."""
        key = id(task.payload)
        hit = self._payloads.get(key)
        if hit is None or hit[0] is not task.payload:
            hit = (task.payload, self.ray.put([bytes(f) for f in task.payload]))
            self._payloads[key] = hit
            while len(self._payloads) > PAYLOADS_KEPT:
                self._payloads.popitem(last=False)
        self._payloads.move_to_end(key)
        return hit[1]

    def _on_answer(self, index: int, task: P.Task, fut: Any) -> None:
        self.calls[index].discard(fut)
        if self.closing or fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            self.pool.answer(index, fut.result(), task)
        elif index not in self.pool.workers:
            return  # lost meanwhile: its tasks are already back in the queue
        elif self._ours(exc):
            where = f"client {task.client_id} in round {task.round}"
            self.pool.fail(
                RuntimeFailure(f"Ray actor failed ({where}): {type(exc).__name__}: {exc}")
            )
        else:
            handle = self.handles.get(index)
            self.pool.lose(index, _reason(exc))
            self._drop(index, handle)
            if self.pool.fatal is None:
                self._spawn()

    def _ours(self, exc: BaseException) -> bool:
        """Our own code raised inside the actor (it catches training errors itself), or
        something outside Ray broke: not a lost machine."""
        ray_exc = self.ray.exceptions
        return isinstance(exc, ray_exc.RayTaskError) or not isinstance(exc, ray_exc.RayError)


def _name(index: int) -> str:
    return f"ray-actor-{index}"


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
