"""ZeroMQ socket mechanics for the runtime (docs/protocol.md): options, private folders, receiving.

The runtime's messages and state machines live in `fedsim.runtime`; this module is only the
mechanism under them, so it imports pyzmq and nothing of the FL layer. Every socket gets
small high-water marks (messages are large, flow control is credit-based), a bounded
message size and a finite linger. CURVE key folders and the authenticator are in `curve.py`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import zmq
import zmq.asyncio

SNDHWM = 16
RCVHWM = 16
LINGER_MS = 1000
MAX_MESSAGE = 1 << 31


def configure_socket(sock: zmq.Socket, *, max_msg: int = MAX_MESSAGE) -> None:
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.setsockopt(zmq.SNDHWM, SNDHWM)
    sock.setsockopt(zmq.RCVHWM, RCVHWM)
    sock.setsockopt(zmq.MAXMSGSIZE, max_msg)


# ---- the coordinator's private folder ------------------------------------------------------

RUN_FOLDER_PREFIX = "fedsim-run-"  # + coordinator pid + "-" + random


def run_folder() -> Path:
    """A private folder (mode 0700) for this coordinator's ipc socket and its local workers'
    keys, named after our pid so that a later coordinator can tell it is stale."""
    remove_stale_run_folders()
    return Path(tempfile.mkdtemp(prefix=f"{RUN_FOLDER_PREFIX}{os.getpid()}-"))


def remove_run_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def remove_stale_run_folders(tmp: str | Path | None = None) -> list[Path]:
    """Remove the run folders of coordinators that died without cleaning up (SIGKILL):
    ours (same owner), named after a pid that no longer runs."""
    removed = []
    for folder in Path(tmp or tempfile.gettempdir()).glob(f"{RUN_FOLDER_PREFIX}*-*"):
        pid = folder.name[len(RUN_FOLDER_PREFIX) :].split("-", 1)[0]
        try:
            if not pid.isdigit() or folder.lstat().st_uid != os.getuid() or pid_alive(int(pid)):
                continue
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---- receiving ------------------------------------------------------------------------------


async def recv_frames(sock: zmq.asyncio.Socket, timeout: float | None = None) -> list | None:
    """One multipart message as memoryviews (zero-copy), or None after `timeout` seconds."""
    fut = sock.recv_multipart(copy=False)
    if timeout is None:
        frames = await fut
    else:
        try:
            frames = await asyncio.wait_for(fut, timeout=timeout)
        except asyncio.TimeoutError:
            return None
    return [f.buffer for f in frames]


async def recv_routed(sock: zmq.asyncio.Socket) -> tuple[bytes, list]:
    """On a ROUTER: (the peer's identity, the frames it sent as memoryviews)."""
    frames = await sock.recv_multipart(copy=False)
    return frames[0].bytes, [f.buffer for f in frames[1:]]


def send_nowait(sock: zmq.asyncio.Socket, frames: list, on_error) -> None:
    """Send without waiting; on_error(exc) is called if the send fails, now or later (an
    asyncio socket reports a failed non-blocking send through its future, not by raising)."""
    fut = sock.send_multipart(frames, copy=False, flags=zmq.NOBLOCK)

    def done(f: asyncio.Future) -> None:
        if not f.cancelled() and f.exception() is not None:
            on_error(f.exception())

    if fut.done():
        done(fut)
    else:
        fut.add_done_callback(done)
