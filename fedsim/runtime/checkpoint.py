"""Checkpoints for `fedsim run --resume`: everything needed to continue a run exactly.

A checkpoint is one wire-format message in the length-prefixed blob form (no pickle):
its meta holds the scalars (round, simulated time, counters, log offsets, the resolved
scenario's hash, algorithm scalars) and its tensors the global model and the algorithm's
server-side arrays. Every client's committed state goes beside it, in
``round-NNNNNN.clients``: one state blob per client, written and read one client at a time
(10,000 clients with error feedback hold gigabytes, which must never be in memory at once);
the checkpoint holds that file's index, length and SHA-256. Both are written to a temporary
file, fsynced, then renamed, the client file first, so a crash leaves either the old or the
new checkpoint, never half of one. Randomness needs no saving: every draw is derived from
(seed, purpose, round, client), and the network model is a pure function of its inputs and
seed.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedsim.codecs.wire import (
    TensorRecord,
    WireError,
    from_blob,
    pack_message,
    to_blob,
    unpack_message,
)
from fedsim.errors import FedsimError

KEEP = 2
_NAME = re.compile(r"^round-(\d{6})\.ckpt$")
_CLIENTS = re.compile(r"^round-(\d{6})\.clients$")
_INDEX = "index/clients"  # int64 rows (client, offset, length) of the .clients file


def _pack_state_blob(state: Mapping[str, np.ndarray]) -> bytes:
    from fedsim.runtime.protocol import pack_state

    return to_blob(pack_state(dict(state)))


class ClientStates(Mapping):
    """A checkpoint's client states, read from its ``.clients`` file one client at a time."""

    def __init__(self, path: Path | None, index: np.ndarray):
        self._path = path
        self._rows = {int(c): (int(off), int(n)) for c, off, n in index}

    def __getitem__(self, client: int) -> dict[str, np.ndarray]:
        from fedsim.runtime.protocol import unpack_state

        off, n = self._rows[client]
        assert self._path is not None
        with open(self._path, "rb") as fh:
            fh.seek(off)
            buf = bytearray(n)
            if fh.readinto(buf) != n:
                raise FedsimError(f"{self._path}: truncated at client {client}")
        try:
            return unpack_state(from_blob(buf))
        except WireError as e:
            raise FedsimError(f"{self._path}: client {client}: {e}") from None

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self._rows))

    def __len__(self) -> int:
        return len(self._rows)


def _write_clients(path: Path, client_states: Mapping[int, Mapping[str, np.ndarray]]):
    """Stream the client states to ``path`` (fsynced); (index rows, bytes, sha256)."""
    rows: list[tuple[int, int, int]] = []
    digest = hashlib.sha256()
    offset = 0
    tmp = path.with_suffix(".clients-tmp")
    with open(tmp, "wb") as fh:
        for c in sorted(client_states):
            state = client_states[c]
            if not state:
                continue
            blob = _pack_state_blob(state)
            fh.write(blob)
            digest.update(blob)
            rows.append((int(c), offset, len(blob)))
            offset += len(blob)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return np.array(rows, dtype=np.int64).reshape(-1, 3), offset, digest.hexdigest()


def _check_clients(path: Path, size: int, sha: str) -> None:
    try:
        if path.stat().st_size != size:
            raise FedsimError(f"{path}: {path.stat().st_size} bytes, the checkpoint says {size}")
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
    except OSError as e:
        raise FedsimError(f"{path}: unreadable client states: {e}") from None
    if digest.hexdigest() != sha:
        raise FedsimError(f"{path}: unreadable client states: SHA-256 does not match")


@dataclass
class RunState:
    """The coordinator's loop state between rounds."""

    round: int = 0  # last completed round
    sim_time: float = 0.0
    task_seq: int = 0
    traffic_seq: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    energy_j: float = 0.0
    best_acc: float | None = None
    final_acc: float | None = None
    final_loss: float | None = None
    empty_rounds: int = 0  # aggregations that had no accepted update
    offsets: dict[str, int] = field(default_factory=dict)
    algo_meta: dict[str, Any] = field(default_factory=dict)  # declared server state (scalars)
    schedule: dict[str, Any] = field(default_factory=dict)  # the schedule's own loop state


def scenario_hash(resolved_toml: str) -> str:
    return hashlib.sha256(resolved_toml.encode()).hexdigest()


def _rec(name: str, arr: np.ndarray) -> TensorRecord:
    arr = np.ascontiguousarray(arr)
    return TensorRecord(
        name=name,
        codec="raw",
        shape=tuple(int(d) for d in arr.shape),
        params={},
        buffers=(arr.reshape(-1),),
    )


def save(
    ckpt_dir: Path,
    state: RunState,
    global_state: dict[str, np.ndarray],
    client_states: dict[int, dict[str, np.ndarray]],
    extra_arrays: dict[str, np.ndarray],
    scen_hash: str,
) -> Path:
    """`client_states` may be lazy (any Mapping: each client's state is read when written);
    `extra_arrays` are named "<section>/<key>" (e.g. "algo/mask/conv1.weight", "sched/...");
    they come back from `load` under the same names."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    clients_path = ckpt_dir / f"round-{state.round:06d}.clients"
    index, size, sha = _write_clients(clients_path, client_states)
    records = [_rec(f"global/{k}", v) for k, v in sorted(global_state.items())]
    records.append(_rec(_INDEX, index))
    records += [_rec(k, v) for k, v in sorted(extra_arrays.items())]
    meta = {
        "round": state.round,
        "sim_time": state.sim_time,
        "task_seq": state.task_seq,
        "traffic_seq": state.traffic_seq,
        "bytes_up": state.bytes_up,
        "bytes_down": state.bytes_down,
        "energy_j": state.energy_j,
        "best_acc": state.best_acc,
        "final_acc": state.final_acc,
        "final_loss": state.final_loss,
        "empty_rounds": state.empty_rounds,
        "offsets": state.offsets,
        "algo_meta": state.algo_meta,
        "schedule": state.schedule,
        "scenario_sha256": scen_hash,
        "clients": {"file": clients_path.name, "bytes": size, "sha256": sha},
    }
    blob = to_blob(pack_message("checkpoint", meta, records))
    path = ckpt_dir / f"round-{state.round:06d}.ckpt"
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        fh.write(blob)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dfd = os.open(ckpt_dir, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    kept = sorted(p for p in ckpt_dir.iterdir() if _NAME.match(p.name))
    for old in kept[:-KEEP]:
        old.unlink()
    rounds = {_NAME.match(p.name).group(1) for p in kept[-KEEP:]}  # type: ignore[union-attr]
    for p in ckpt_dir.iterdir():  # client files of removed checkpoints, or of a torn save
        m = _CLIENTS.match(p.name)
        if m and m.group(1) not in rounds:
            p.unlink()
    return path


def latest(ckpt_dir: Path) -> Path | None:
    if not ckpt_dir.is_dir():
        return None
    found = sorted(p for p in ckpt_dir.iterdir() if _NAME.match(p.name))
    return found[-1] if found else None


def load(path: Path, scen_hash: str) -> tuple[RunState, dict, Mapping[int, dict], dict]:
    """(run state, global model, client states (read lazily from the .clients file, which is
    checked against its SHA-256 first), extra arrays)."""
    try:
        msg = unpack_message(from_blob(path.read_bytes()))
    except (OSError, WireError) as e:
        raise FedsimError(f"{path}: unreadable checkpoint: {e}") from None
    m = msg.meta
    if m.get("scenario_sha256") != scen_hash:
        raise FedsimError(
            f"{path}: checkpoint was written for a different scenario (the resolved scenario differs from "
            f"{path.parent.parent / 'scenario.toml'}); resume with the same file and overrides"
        )
    state = RunState(
        round=m["round"],
        sim_time=m["sim_time"],
        task_seq=m["task_seq"],
        traffic_seq=m["traffic_seq"],
        bytes_up=m["bytes_up"],
        bytes_down=m["bytes_down"],
        energy_j=m.get("energy_j", 0.0),
        best_acc=m["best_acc"],
        final_acc=m["final_acc"],
        final_loss=m["final_loss"],
        empty_rounds=int(m.get("empty_rounds", 0)),
        offsets=dict(m["offsets"]),
        algo_meta=dict(m.get("algo_meta") or {}),
        schedule=dict(m.get("schedule") or {}),
    )
    global_state: dict[str, np.ndarray] = {}
    extra: dict[str, np.ndarray] = {}
    inline: dict[int, dict[str, np.ndarray]] = {}  # client states inside the checkpoint
    index = np.zeros((0, 3), dtype=np.int64)
    for rec in msg.tensors:
        arr = np.asarray(rec.buffers[0]).reshape(rec.shape).copy()
        kind, _, rest = rec.name.partition("/")
        if kind == "global":
            global_state[rest] = arr
        elif rec.name == _INDEX:
            index = arr.reshape(-1, 3)
        elif kind == "client" and "clients" not in m:
            # written before client states moved to the .clients file: "client/<id>/<key>"
            cid, _, key = rest.partition("/")
            inline.setdefault(int(cid), {})[key] = arr
        else:
            extra[rec.name] = arr
    if "clients" not in m:
        return state, global_state, inline, extra
    info = m["clients"]
    clients_path = path.parent / info["file"]
    if len(index):
        _check_clients(clients_path, int(info["bytes"]), str(info["sha256"]))
    return state, global_state, ClientStates(clients_path if len(index) else None, index), extra


def pack_values(
    prefix: str, values: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Declared state (None, bool, int, float, str, arrays, dicts of scalars or of arrays)
    -> (msgpack-able description, arrays named "<prefix>/<name>[/<key>]")."""
    meta: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}

    def array(name: str, a: np.ndarray) -> dict[str, Any]:
        a = np.asarray(a)
        arrays[f"{prefix}/{name}"] = a.astype(np.uint8) if a.dtype == bool else a
        return {"dtype": str(a.dtype)}

    for name, v in values.items():
        if v is None or isinstance(v, (bool, int, float, str)):
            meta[name] = {"value": v}
        elif isinstance(v, np.ndarray):
            meta[name] = {"array": array(name, v)}
        elif isinstance(v, dict) and all(isinstance(x, np.ndarray) for x in v.values()):
            meta[name] = {"arrays": {k: array(f"{name}/{k}", x) for k, x in v.items()}}
        elif isinstance(v, dict) and all(
            x is None or isinstance(x, (bool, int, float, str)) for x in v.values()
        ):
            meta[name] = {"value": dict(v)}
        else:
            raise FedsimError(f"server state {name!r}: {type(v).__name__} cannot be checkpointed")
    return meta, arrays


def unpack_values(
    prefix: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]
) -> dict[str, Any]:
    def array(name: str, d: dict[str, Any]) -> np.ndarray:
        return arrays[f"{prefix}/{name}"].astype(np.dtype(d["dtype"]))

    out: dict[str, Any] = {}
    for name, d in meta.items():
        if "array" in d:
            out[name] = array(name, d["array"])
        elif "arrays" in d:
            out[name] = {k: array(f"{name}/{k}", x) for k, x in d["arrays"].items()}
        else:
            out[name] = d["value"]
    return out


def truncate_logs(run_dir: Path, offsets: dict[str, int]) -> None:
    """Cut each log back to its length at the checkpoint: rows after it (and any torn last
    line) are dropped, so the resumed run appends exactly what the uninterrupted one wrote."""
    for name, size in offsets.items():
        p = run_dir / name
        if p.exists():
            with open(p, "r+b") as fh:
                fh.truncate(size)


def trim_torn_tail(path: Path) -> None:
    """Drop an unterminated last line (a write cut by a crash) so appends start clean."""
    if not path.exists():
        return
    with open(path, "r+b") as fh:
        data = fh.read()
        if data and not data.endswith(b"\n"):
            fh.truncate(data.rfind(b"\n") + 1)


def latest_valid(
    ckpt_dir: Path,
    scen_hash: str,
    on_skip: Callable[[Path, str], None] | None = None,
) -> tuple[Path, tuple[RunState, dict, dict[int, dict], dict]] | None:
    """The newest checkpoint of ckpt_dir that loads and verifies, with what `load` returns;
    None when there is no checkpoint at all.

    Checkpoints are tried newest first. One that cannot be read, is not a well-formed
    checkpoint message, or whose round is not the one its name says is skipped, and
    `on_skip(path, reason)` is told (the coordinator logs it). A checkpoint written for a
    different scenario is not damage but a mistake: that error is raised at once. When
    checkpoints exist and none verifies, the error names each one and why.
    """
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return None
    found = sorted((p for p in ckpt_dir.iterdir() if _NAME.match(p.name)), reverse=True)
    reasons = []
    for path in found:
        reason = None
        try:
            loaded = load(path, scen_hash)
        except FedsimError as e:
            if _other_scenario(path, scen_hash):
                raise
            reason = str(e)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            reason = f"{path}: malformed checkpoint: {type(e).__name__}: {e}"
        else:
            want = int(path.name[len("round-") : -len(".ckpt")])
            if loaded[0].round != want:
                reason = f"{path}: holds round {loaded[0].round}, not round {want}"
        if reason is None:
            return path, loaded
        reasons.append(reason)
        if on_skip is not None:
            on_skip(path, reason)
    if found:
        raise FedsimError(
            f"{ckpt_dir}: no checkpoint verifies ({'; '.join(reasons)}); "
            "start the run again without --resume"
        )
    return None


def _other_scenario(path: Path, scen_hash: str) -> bool:
    """Whether `path` is a whole checkpoint of another scenario: not damage but a mistake,
    which a fallback to an older checkpoint (of that same other scenario) would hide."""
    try:
        meta = unpack_message(from_blob(path.read_bytes())).meta
    except (OSError, WireError):
        return False
    return isinstance(meta, dict) and meta.get("scenario_sha256") not in (None, scen_hash)
