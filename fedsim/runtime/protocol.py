"""The runtime's envelope around wire-format messages (see docs/protocol.md).

A runtime message is a ZeroMQ multipart: frame 0 is a small msgpack map (the envelope:
`type`, ids, how many frames follow in each section); the rest are whole wire-format
messages (`fedsim.codecs.wire`) laid end to end. The simulated network only ever sees the
payload section (the model going down, the update coming up); the client-state section is
machinery (so any worker can train any client) and is never counted as traffic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from fedsim.codecs.wire import TensorRecord, WireError, pack_message, unpack_message

PROTOCOL_VERSION = 1
MAX_ENVELOPE = 1 << 20

HELLO = "hello"
SETUP = "setup"
READY = "ready"
TASK = "task"
RESULT = "result"
ERROR = "error"
HEARTBEAT = "heartbeat"
SHUTDOWN = "shutdown"
REFUSE = "refuse"

# Versions a hello carries; a worker whose fedsim or torch differs from the coordinator's is
# refused (its clients would not train bit for bit as the coordinator's do). numpy is
# reported, for the record. Local build tags (torch's "+cpu", "+cu130") are not compared.
VERSIONS = ("fedsim", "torch", "numpy")
MUST_MATCH = ("fedsim", "torch")


def pack_envelope(kind: str, **fields: Any) -> bytes:
    return msgpack.packb({"v": PROTOCOL_VERSION, "type": kind, **fields}, use_bin_type=True)


def _no_ext(code: int, data: bytes) -> Any:
    raise WireError(f"msgpack extension type {code} in an envelope")


def _check_plain(obj: Any, depth: int = 0) -> None:
    """Envelopes hold nil, bool, int, float, str, bin, arrays and maps only: msgpack decodes
    its timestamp extension without calling ext_hook, so look at what came out."""
    if depth > 32:
        raise WireError("envelope nested too deeply")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_plain(k, depth + 1)
            _check_plain(v, depth + 1)
    elif isinstance(obj, list):
        for v in obj:
            _check_plain(v, depth + 1)
    elif obj is not None and not isinstance(obj, (bool, int, float, str, bytes)):
        raise WireError(f"envelope holds a {type(obj).__name__}")


def unpack_envelope(frame: bytes | memoryview) -> dict[str, Any]:
    if len(frame) > MAX_ENVELOPE:
        raise WireError("envelope too large")
    try:
        env = msgpack.unpackb(
            bytes(frame),
            raw=False,
            strict_map_key=True,
            ext_hook=_no_ext,
            max_bin_len=MAX_ENVELOPE,
            max_str_len=MAX_ENVELOPE,
            max_array_len=4096,
            max_map_len=4096,
        )
    except Exception as e:  # msgpack raises several types for malformed input
        raise WireError(f"malformed envelope: {e}") from None
    if not isinstance(env, dict) or not isinstance(env.get("type"), str):
        raise WireError("envelope is not a map with a 'type'")
    _check_plain(env)
    if env.get("v") != PROTOCOL_VERSION:
        raise WireError(
            f"protocol version {env.get('v')!r} not supported (want {PROTOCOL_VERSION})"
        )
    return env


@dataclass(frozen=True)
class Task:
    task_id: int
    round: int
    client_id: int
    payload: Sequence[Any]  # wire frames of the model message (shared between clients)
    state: Sequence[Any]  # wire frames of the client's state message
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskResult:
    task_id: int
    round: int
    client_id: int
    update: list[Any]  # wire frames of the update message
    state: list[Any]  # wire frames of the client's new state
    meta: dict[str, Any] = field(default_factory=dict)


def task_frames(task: Task) -> list[Any]:
    env = pack_envelope(
        TASK,
        task=task.task_id,
        round=task.round,
        client=task.client_id,
        n_payload=len(task.payload),
        n_state=len(task.state),
        meta=task.meta,
    )
    return [env, *task.payload, *task.state]


def result_frames(res: TaskResult) -> list[Any]:
    env = pack_envelope(
        RESULT,
        task=res.task_id,
        round=res.round,
        client=res.client_id,
        n_update=len(res.update),
        n_state=len(res.state),
        meta=res.meta,
    )
    return [env, *res.update, *res.state]


def _split(frames: Sequence[Any], env: dict, first: str, second: str) -> tuple[list, list]:
    n1, n2 = env.get(first), env.get(second)
    if not isinstance(n1, int) or not isinstance(n2, int) or n1 < 0 or n2 < 0:
        raise WireError("envelope section counts missing or invalid")
    if 1 + n1 + n2 != len(frames):
        raise WireError(f"envelope announces {1 + n1 + n2} frames, message has {len(frames)}")
    return list(frames[1 : 1 + n1]), list(frames[1 + n1 :])


def parse_hello(env: dict) -> tuple[int, str]:
    """(pid, host) of a `hello` (or a Ray actor's `ready`): pid a non-negative integer, host
    a string."""
    pid = env.get("pid")
    host = env.get("host", "")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid < 0 or not isinstance(host, str):
        raise WireError("hello needs pid (a non-negative integer) and host (a string)")
    return pid, host


def local_versions() -> dict[str, str]:
    """The versions a hello carries, of this process."""
    import torch

    import fedsim

    return {"fedsim": fedsim.__version__, "torch": torch.__version__, "numpy": np.__version__}


def hello_envelope(pid: int, host: str, versions: dict[str, str] | None = None) -> bytes:
    return pack_envelope(HELLO, pid=pid, host=host, **(versions or local_versions()))


def parse_versions(env: dict) -> dict[str, str]:
    """The hello's `fedsim`, `torch` and `numpy` versions, each a non-empty string."""
    out = {}
    for name in VERSIONS:
        v = env.get(name)
        if not isinstance(v, str) or not v or len(v) > 64:
            raise WireError(f"hello needs {name!r} (the worker's {name} version, a string)")
        out[name] = v
    return out


def version_refusal(theirs: dict[str, str], ours: dict[str, str]) -> str | None:
    """Why a worker with `theirs` versions cannot train for a coordinator with `ours`."""
    for name in MUST_MATCH:
        a, b = theirs[name].split("+")[0], ours[name].split("+")[0]
        if a != b:
            return (
                f"{name} {theirs[name]} on the worker, {ours[name]} on the coordinator: "
                f"install the same {name} version on both"
            )
    return None


def parse_task(frames: Sequence[Any], env: dict) -> Task:
    payload, state = _split(frames, env, "n_payload", "n_state")
    return Task(
        _int(env, "task"),
        _int(env, "round"),
        _int(env, "client"),
        payload,
        state,
        _map(env, "meta"),
    )


def parse_result(frames: Sequence[Any], env: dict) -> TaskResult:
    update, state = _split(frames, env, "n_update", "n_state")
    return TaskResult(
        _int(env, "task"),
        _int(env, "round"),
        _int(env, "client"),
        update,
        state,
        _map(env, "meta"),
    )


def _int(env: dict, key: str) -> int:
    v = env.get(key)
    if not isinstance(v, int) or isinstance(v, bool):
        raise WireError(f"envelope field {key!r} must be an integer")
    return v


def _map(env: dict, key: str) -> dict:
    v = env.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise WireError(f"envelope field {key!r} must be a map")
    return v


# ---- client state as a wire message (raw arrays, lossless) --------------------------------


def pack_state(state: dict[str, np.ndarray]) -> list[Any]:
    records = [
        TensorRecord(
            name=k,
            codec="raw",
            shape=tuple(int(d) for d in v.shape),
            params={},
            buffers=(np.ascontiguousarray(v).reshape(-1),),
        )
        for k, v in sorted(state.items())
    ]
    return pack_message("state", {}, records)


def _state_views(frames: Sequence[Any]) -> dict[str, np.ndarray]:
    msg = unpack_message(frames)
    out = {}
    for rec in msg.tensors:
        if rec.codec != "raw" or len(rec.buffers) != 1:
            raise WireError(f"state tensor {rec.name!r} is not a raw single-buffer record")
        buf = np.asarray(rec.buffers[0])
        if buf.size != int(np.prod(rec.shape, dtype=np.int64)):
            raise WireError(f"state tensor {rec.name!r}: {buf.size} values for shape {rec.shape}")
        out[rec.name] = buf.reshape(rec.shape)
    return out


def check_state(frames: Sequence[Any]) -> None:
    """Validate a client-state message without copying its tensors."""
    if frames:
        _state_views(frames)


def unpack_state(frames: Sequence[Any]) -> dict[str, np.ndarray]:
    if not frames:
        return {}
    return {k: v.copy() for k, v in _state_views(frames).items()}
