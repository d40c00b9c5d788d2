"""The client side, written once: the actor loop and the body that answers a task.

`serve` is the loop of every client actor that speaks ZeroMQ — a `fedsim worker` process
and the in-process actor alike: HELLO; SETUP -> READY (the runner is built from the
scenario TOML, or was handed over in process); TASK -> RESULT or ERROR; SHUTDOWN ends it.
A TASK whose meta says `group` = N is the first of N tasks sent back to back, trained
together (`runtime.batch_clients`): one RESULT (or ERROR) each, in order.
`answer_task` / `answer_tasks` turn tasks' frames into the answers' frames; the Ray actor
calls them too.

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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np
import zmq
import zmq.asyncio

from fedsim.errors import FedsimError, RuntimeFailure
from fedsim.network import transport
from fedsim.runtime import protocol as P

if TYPE_CHECKING:
    from fedsim.runtime.client import ClientRunner

FAULT_KINDS = ("kill", "corrupt", "negstep")
GROUP_KEY = "group"  # task meta: how many tasks, sent back to back, are trained together
RUN_FOLDER_ENV = "FEDSIM_RUN_FOLDER"  # set for the workers a coordinator spawns


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
    if not os.environ.get("FEDSIM_CODEC_THREADS"):
        # A worker's codec work shares its torch thread budget, never the whole machine:
        # the other workers are training meanwhile (the result is bit-identical either way).
        from fedsim.codecs import parallel

        parallel.set_threads(threads)
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


def _silent(line: str) -> None:
    pass


@dataclass
class Link:
    """What the connection monitor of a `fedsim worker` has seen (see `_watch_link`)."""

    endpoint: str = ""
    curve: bool = False
    fatal: str | None = None  # a reason to stop now (refused by CURVE, mechanism mismatch)
    problem: str | None = None  # the last thing that went wrong, for a join that times out
    connected: bool = False


async def serve(
    sock: zmq.asyncio.Socket,
    *,
    runner: ClientRunner | None = None,
    threads: int = 1,
    heartbeat: float | None = None,
    timeout: float | None = None,
    fault: Fault | None = None,
    say: Callable[[str], None] = _silent,
    link: Link | None = None,
) -> int:
    """Serve tasks on a connected DEALER until SHUTDOWN (returns 0) or, with `heartbeat`,
    until the coordinator has been silent for 2 x `timeout` or our parent died (returns 3).

    With a `runner` (in process) tasks run on the event loop's own thread, one after
    another (or a group at a time), as the coordinator waits for them anyway; without one the
    runner is built from SETUP and tasks run in a thread, so heartbeats go on while clients
    train.

    Raises RuntimeFailure when the worker never joins (no answer within 2 x `timeout`,
    refused by CURVE); returns 2 after the coordinator refused it (REFUSE) or after it could
    not build its runner (it answered ERROR, so the coordinator stops with that message)."""
    await sock.send_multipart([P.hello_envelope(os.getpid(), socket.gethostname())])
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=1) if runner is None else None
    beater = asyncio.ensure_future(_beat(sock, heartbeat)) if heartbeat else None
    last_seen = time.monotonic()
    parent = os.getppid()
    spawned = RUN_FOLDER_ENV in os.environ  # a coordinator's local worker: dies with it
    joined = runner is not None
    done = 0
    backlog: list = []  # a message read while gathering a group of tasks
    try:
        while True:
            if backlog:
                frames = backlog.pop(0)
            else:
                frames = await transport.recv_frames(sock, timeout=heartbeat)
            if link is not None and link.fatal:  # refused by CURVE (also on a reconnect)
                raise RuntimeFailure(link.fatal)
            if frames is None:
                silent = time.monotonic() - last_seen
                if timeout is not None and silent > 2 * timeout:
                    if not joined:
                        raise RuntimeFailure(_no_answer(link, silent))
                    say(f"exit 3: no word from the coordinator for {silent:.0f}s")
                    return 3  # the coordinator is gone
                if spawned and os.getppid() != parent:
                    say("exit 3: the process that started this worker has died")
                    _remove_dead_parents_folder(parent)
                    return 3
                continue
            last_seen = time.monotonic()
            env = P.unpack_envelope(frames[0])
            kind = env["type"]
            if kind == P.SHUTDOWN:
                say(f"exit 0: the coordinator said shutdown ({done} tasks done)")
                return 0
            if kind == P.REFUSE:
                say(f"error: refused by the coordinator: {env.get('reason')}")
                return 2
            if kind == P.SETUP:
                if runner is None:
                    scenario = str(env.get("scenario"))
                    try:
                        runner = await loop.run_in_executor(pool, build_runner, scenario, threads)
                    except Exception as e:  # the coordinator stops with this message
                        ours = isinstance(e, FedsimError)
                        await sock.send_multipart(
                            error_frames(str(e) if ours else f"{type(e).__name__}: {e}")
                        )
                        if not ours:
                            raise  # a bug: reported as one by the CLI
                        say(f"error: cannot set up the scenario: {e}")
                        return 2
                joined = True
                await sock.send_multipart([P.pack_envelope(P.READY)])
                say(f"joined: training clients of {_scenario_name(env)} for {_where(link)}")
            elif kind == P.TASK:
                group = [frames]
                size = _group_size(env)
                while len(group) < size:  # the rest of the group follows back to back
                    more = await transport.recv_frames(sock, timeout=heartbeat)
                    if more is None:
                        if timeout is not None and time.monotonic() - last_seen > 2 * timeout:
                            say("exit 3: the coordinator went silent within a group of tasks")
                            return 3
                        continue
                    last_seen = time.monotonic()
                    if P.unpack_envelope(more[0])["type"] == P.TASK:
                        group.append(more)
                    else:  # answered after the group (a SHUTDOWN ends the wait)
                        backlog.append(more)
                        if P.unpack_envelope(more[0])["type"] == P.SHUTDOWN:
                            break
                if len(group) < size:
                    continue
                if pool is None:  # in process: on the loop's thread (the coordinator waits)
                    outs = answer_tasks(runner, group, fault)
                else:
                    outs = await loop.run_in_executor(pool, answer_tasks, runner, group, fault)
                for out in outs:
                    done += 1
                    await sock.send_multipart(out, copy=False)
                    failed = P.unpack_envelope(out[0])
                    if failed["type"] == P.ERROR:
                        say(f"failure: task {failed.get('task')}: {failed.get('message')}")
    finally:
        if beater is not None:
            beater.cancel()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _group_size(env: dict) -> int:
    meta = env.get("meta")
    size = meta.get(GROUP_KEY, 1) if isinstance(meta, dict) else 1
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else 1


def _remove_dead_parents_folder(parent: int) -> None:
    """A coordinator killed outright cannot remove its private folder (ipc socket, local
    worker keys); the local workers it spawned, told where it is, do it for it."""
    folder = os.environ.get(RUN_FOLDER_ENV)
    if folder and os.path.basename(folder).startswith(f"{transport.RUN_FOLDER_PREFIX}{parent}-"):
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def _scenario_name(env: dict) -> str:
    import tomllib

    try:
        return repr(tomllib.loads(str(env.get("scenario")))["name"])
    except Exception:
        return "the scenario"


def _where(link: Link | None) -> str:
    return f"the coordinator at {link.endpoint}" if link else "the coordinator"


def _no_answer(link: Link | None, waited: float) -> str:
    where = link.endpoint if link else "the coordinator"
    why = link.problem if link and link.problem else None
    if why is None:
        why = (
            "connected, but no reply to hello"
            if link and link.connected
            else "is it running and listening there?"
        )
    return f"no answer from the coordinator at {where} within {waited:.0f}s: {why}"


async def _watch_link(monitor: zmq.asyncio.Socket, link: Link, say: Callable[[str], None]):
    """One line per connection event that matters; CURVE refusals are fatal."""
    from zmq.utils.monitor import parse_monitor_message

    try:
        while True:
            ev = parse_monitor_message(await monitor.recv_multipart())
            kind, value = ev["event"], ev["value"]
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                say(
                    f"{'reconnected' if link.connected else 'connected'} to {link.endpoint}"
                    f"{' (CURVE)' if link.curve else ''}"
                )
                link.connected, link.problem = True, None
            elif kind == zmq.EVENT_DISCONNECTED and link.connected:
                say(f"failure: lost the connection to {link.endpoint}; reconnecting")
            elif kind == zmq.EVENT_CONNECT_RETRIED and not link.connected and not link.problem:
                link.problem = "the connection is refused or the host unreachable"
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                link.fatal = (
                    f"refused by the coordinator's CURVE authenticator (ZAP status {value}): "
                    "this worker's public key is not in its authorized folder "
                    "(fedsim keys add-worker DIR NAME; copy DIR/NAME to this host)"
                )
                say(f"failure: {link.fatal}")
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
                    link.fatal = (
                        "the coordinator does not use CURVE (start this worker without --keys)"
                        if link.curve
                        else "the coordinator requires CURVE: start this worker with --keys "
                        "DIR/NAME (a worker folder of `fedsim keys generate DIR`)"
                    )
                else:
                    link.problem = f"the handshake failed (ZMTP protocol error {value:#x})"
                say(f"failure: {link.fatal or link.problem}")
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                link.problem = (
                    "the CURVE handshake failed: is the server.key of this worker's folder "
                    "the coordinator's? (a folder of another `fedsim keys generate`?)"
                    if link.curve
                    else "the handshake failed (the peer closed the connection)"
                )
    except asyncio.CancelledError:
        pass
    finally:
        monitor.close(linger=0)


async def _beat(sock: zmq.asyncio.Socket, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        await sock.send_multipart([P.pack_envelope(P.HEARTBEAT)])


def run_worker(
    endpoint: str,
    *,
    keys_dir: str | None,
    threads: int,
    heartbeat: float,
    timeout: float,
    quiet: bool = False,
) -> int:
    """`fedsim worker`: connect to a coordinator and serve until it says SHUTDOWN.

    Prints one line (stderr) on connect, join, each failure and exit unless `quiet`; with
    `quiet`, what the coordinator was told as well (a refusal, a setup error) is not repeated
    here. A worker that cannot join raises RuntimeFailure: one line and exit 2, always."""
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))

    def say(line: str) -> None:
        if not quiet:
            print(f"fedsim worker: {line}", file=sys.stderr, flush=True)

    async def main() -> int:
        from fedsim.network import curve

        ctx = zmq.asyncio.Context()
        sock = ctx.socket(zmq.DEALER)
        transport.configure_socket(sock)
        sock.setsockopt(zmq.IDENTITY, uuid.uuid4().bytes)
        link = Link(endpoint=endpoint, curve=bool(keys_dir))
        watcher = None
        try:
            if keys_dir:
                try:
                    curve.make_client(sock, keys_dir)
                except curve.KeyFolderError as e:
                    raise RuntimeFailure(f"--keys: {e}") from None
            watcher = asyncio.ensure_future(_watch_link(sock.get_monitor_socket(), link, say))
            sock.connect(endpoint)
            index = int(os.environ.get("FEDSIM_WORKER_INDEX", "-1"))
            return await serve(
                sock,
                threads=threads,
                heartbeat=heartbeat,
                timeout=timeout,
                fault=fault_for(index),
                say=say,
                link=link,
            )
        finally:
            if watcher is not None:
                sock.disable_monitor()  # while the monitor socket is still open to hear it
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            sock.close(linger=transport.LINGER_MS)
            ctx.term()

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        say("exit 130: interrupted")
        return 130
