"""The client side, written once: the actor loop and the body that answers a task.

`serve` is the loop of every client actor that speaks ZeroMQ — a `fedsim worker` process
and the in-process actor alike: HELLO; SETUP -> READY (the runner is built from the
scenario TOML, or was handed over in process); TASK -> RESULT or ERROR; SHUTDOWN ends it.
`answer_task` turns a task's frames into the answer's frames; the Ray actor calls it too.

Test-only fault injection: FEDSIM_FAULT="KIND:I:N" makes actor (worker index, Ray actor
index; 0 in process) I misbehave on its N-th task: `kill` SIGKILLs its own process before
answering, `corrupt` answers a malformed update message, `negstep` flips the sign of one
quantizer step in the update (it parses, but does not decode).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np
import zmq
import zmq.asyncio

from fedsim.errors import RuntimeFailure
from fedsim.network import transport
from fedsim.runtime import protocol as P

if TYPE_CHECKING:
    from fedsim.runtime.client import ClientRunner

FAULT_KINDS = ("kill", "corrupt", "negstep")


# ---- test-only fault injection ------------------------------------------------------------


@dataclass
class Fault:
    kind: str
    at: int  # the N-th task this actor answers (1-based)
    seen: int = 0

    def apply(self, frames: list) -> list:
        """Count one answered task; misbehave on the chosen one."""
        self.seen += 1
        if self.seen != self.at:
            return frames
        if self.kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.kind == "corrupt":
            return [frames[0], b"\x93garbage", *frames[2:]]
        if self.kind == "negstep":
            return negate_quantizer_step(frames)
        return frames


def fault_for(index: int) -> Fault | None:
    parts = os.environ.get("FEDSIM_FAULT", "").split(":")
    if len(parts) != 3 or parts[0] not in FAULT_KINDS or parts[1] != str(index):
        return None
    return Fault(parts[0], int(parts[2]))


def negate_quantizer_step(frames: list) -> list:
    """Result frames with the first positive step of the first uniformly quantized tensor
    (codec q<bits>, scales [lo, step, ...]) negated; unchanged if there is none."""
    env = P.unpack_envelope(frames[0])
    header = msgpack.unpackb(bytes(frames[1]), raw=False)
    for t in header["tensors"]:
        if not re.fullmatch(r"q\d+(:.*)?", t["codec"]) or len(t["buffers"]) != 2:
            continue
        at = 1 + t["buffers"][1]["frame"]  # frame numbers count from the update's header
        scales = np.frombuffer(bytes(frames[at]), np.float32).copy()
        steps = np.flatnonzero(scales[1::2] > 0)
        if steps.size and at < 1 + env["n_update"]:
            scales[2 * steps[0] + 1] *= -1
            return [*frames[:at], scales.tobytes(), *frames[at + 1 :]]
    return frames


# ---- the body of an actor -----------------------------------------------------------------


def build_runner(scenario_toml: str, threads: int) -> ClientRunner:
    """A ClientRunner from the resolved scenario, validated again here (no pickle)."""
    import tomllib
    import torch

    from fedsim.runtime.client import ClientRunner
    from fedsim.scenario import validate_doc

    torch.set_num_threads(threads)
    return ClientRunner(validate_doc(tomllib.loads(scenario_toml)))


def answer_task(runner: ClientRunner, frames: Sequence[Any], fault: Fault | None = None) -> list:
    """TASK frames -> RESULT frames, or ERROR frames if training raised (the coordinator
    decides what that means)."""
    task = P.parse_task(frames, P.unpack_envelope(frames[0]))
    try:
        result = runner.run(task)
    except Exception as e:
        return [P.pack_envelope(P.ERROR, task=task.task_id, message=f"{type(e).__name__}: {e}")]
    out = P.result_frames(result)
    return fault.apply(out) if fault is not None else out


def answer_tasks(runner: ClientRunner, group: list, fault: Fault | None = None) -> list[list]:
    """Several TASK messages answered together (`runtime.batch_clients`): the runner trains
    their clients as one computation; one RESULT (or ERROR) per task, in order."""
    if len(group) == 1:
        return [answer_task(runner, group[0], fault)]
    tasks = [P.parse_task(f, P.unpack_envelope(f[0])) for f in group]
    try:
        results = runner.run_many(tasks)
    except Exception as e:
        why = f"{type(e).__name__}: {e}"
        return [[P.pack_envelope(P.ERROR, task=t.task_id, message=why)] for t in tasks]
    outs = [P.result_frames(r) for r in results]
    return [fault.apply(o) for o in outs] if fault is not None else outs


def error_frames(message: str) -> list:
    return [P.pack_envelope(P.ERROR, message=message)]


# ---- the actor loop -----------------------------------------------------------------------


async def serve(
    sock: zmq.asyncio.Socket,
    *,
    runner: ClientRunner | None = None,
    threads: int = 1,
    heartbeat: float | None = None,
    timeout: float | None = None,
    fault: Fault | None = None,
) -> int:
    """Serve tasks on a connected DEALER until SHUTDOWN (returns 0) or, with `heartbeat`,
    until the coordinator has been silent for 2 x `timeout` or our parent died (returns 3).

    With a `runner` (in process) tasks run on the event loop's own thread, one after
    another, as the coordinator waits for them anyway; without one the runner is built from
    SETUP and tasks run in a thread, so heartbeats go on while a client trains."""
    await sock.send_multipart(
        [P.pack_envelope(P.HELLO, pid=os.getpid(), host=socket.gethostname())]
    )
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=1) if runner is None else None
    beater = asyncio.ensure_future(_beat(sock, heartbeat)) if heartbeat else None
    last_seen = time.monotonic()
    parent = os.getppid()
    backlog: list = []  # a message read while gathering a group of tasks
    try:
        while True:
            if backlog:
                frames = backlog.pop(0)
            else:
                frames = await transport.recv_frames(sock, timeout=heartbeat)
            if frames is None:
                silent = time.monotonic() - last_seen
                if (timeout is not None and silent > 2 * timeout) or (
                    parent != 1 and os.getppid() == 1
                ):
                    return 3  # the coordinator is gone
                continue
            last_seen = time.monotonic()
            env = P.unpack_envelope(frames[0])
            kind = env["type"]
            if kind == P.SHUTDOWN:
                return 0
            if kind == P.SETUP:
                if runner is None:
                    runner = await loop.run_in_executor(
                        pool, build_runner, str(env["scenario"]), threads
                    )
                await sock.send_multipart([P.pack_envelope(P.READY)])
            elif kind == P.TASK:
                if pool is None:  # in process: the tasks already queued, up to batch_clients
                    group = [frames]
                    limit = int(runner.scenario.runtime.batch_clients)
                    while len(group) < limit and not backlog and await sock.poll(0):
                        more = await transport.recv_frames(sock)
                        queue = group if P.unpack_envelope(more[0])["type"] == P.TASK else backlog
                        queue.append(more)
                    outs = answer_tasks(runner, group, fault)
                else:
                    outs = [await loop.run_in_executor(pool, answer_task, runner, frames, fault)]
                for out in outs:
                    await sock.send_multipart(out, copy=False)
    finally:
        if beater is not None:
            beater.cancel()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


async def _beat(sock: zmq.asyncio.Socket, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        await sock.send_multipart([P.pack_envelope(P.HEARTBEAT)])


def run_worker(
    endpoint: str, *, keys_dir: str | None, threads: int, heartbeat: float, timeout: float
) -> int:
    """`fedsim worker`: connect to a coordinator and serve until it says SHUTDOWN."""
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))

    async def main() -> int:
        ctx = zmq.asyncio.Context()
        sock = ctx.socket(zmq.DEALER)
        transport.configure_socket(sock)
        sock.setsockopt(zmq.IDENTITY, uuid.uuid4().bytes)
        try:
            if keys_dir:
                try:
                    transport.curve_client(sock, keys_dir)
                except FileNotFoundError as e:
                    raise RuntimeFailure(str(e)) from None
            sock.connect(endpoint)
            index = int(os.environ.get("FEDSIM_WORKER_INDEX", "-1"))
            return await serve(
                sock, threads=threads, heartbeat=heartbeat, timeout=timeout, fault=fault_for(index)
            )
        finally:
            sock.close(linger=transport.LINGER_MS)
            ctx.term()

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return 130
