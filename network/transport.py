"""ZeroMQ socket mechanics for the runtime (docs/protocol.md): options, CURVE keys, receiving.

The runtime's messages and state machines live in `fedsim.runtime`; this module is only the
mechanism under them, so it imports pyzmq and nothing of the FL layer. Every socket gets
small high-water marks (messages are large, flow control is credit-based), a bounded
message size and a finite linger. CURVE keys are the pairs `fedsim keys generate DIR`
writes: `server.key(_secret)` for the coordinator, `worker.key(_secret)` for workers.
"""

from __future__ import annotations

import asyncio
import os
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


# ---- CURVE ----------------------------------------------------------------------------------


def load_curve_keys(keys_dir: str | Path, role: str) -> tuple[bytes, bytes]:
    """(public, secret) for role 'server' or 'worker'; FileNotFoundError names the fix."""
    import zmq.auth

    path = Path(keys_dir) / f"{role}.key_secret"
    if not path.exists():
        raise FileNotFoundError(
            f"runtime.curve_keys: {path} not found (run `fedsim keys generate {keys_dir}`)"
        )
    public, secret = zmq.auth.load_certificate(str(path))
    return public, secret


def generate_keys(keys_dir: str | Path) -> list[Path]:
    """Write fresh server and worker key pairs into keys_dir (secrets readable by owner only)."""
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


def curve_server(ctx: zmq.asyncio.Context, sock: zmq.Socket, keys_dir: str | Path):
    """Make sock a CURVE server accepting only the public keys in keys_dir; returns the
    running authenticator (stop it when the socket closes)."""
    from zmq.auth.asyncio import AsyncioAuthenticator

    pub, sec = load_curve_keys(keys_dir, "server")
    auth = AsyncioAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(Path(keys_dir)))
    sock.curve_server = True
    sock.curve_publickey = pub
    sock.curve_secretkey = sec
    return auth


def curve_client(sock: zmq.Socket, keys_dir: str | Path) -> None:
    """Present the worker key pair and expect the server's public key."""
    pub, sec = load_curve_keys(keys_dir, "worker")
    server_pub, _ = load_curve_keys(keys_dir, "server")
    sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = pub, sec, server_pub


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
