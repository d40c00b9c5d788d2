"""Per-client state store (error-feedback residuals, per-client algorithm tensors).

The coordinator owns it; state travels with each task and comes back with the result; a
client's new state is committed only when the coordinator accepts its result.

Three modes, chosen when the store is made (never by the scenario's experiment keys, so
the results do not depend on it):

- in memory (the default): a dict of numpy arrays per client.
- on disk (``ClientStateStore(disk=True)`` or ``directory=...``): one file per client
  holding the committed wire-format state message as a blob (``fedsim.codecs.wire``). Only
  the clients of the round in flight are in memory; the rest live in the page cache, which
  the kernel evicts as needed and which is not part of the process's resident set. A
  100,000-client population with error feedback needs one model-sized residual per client
  that has ever taken part, far more than fits in RAM, and this keeps it on disk.
- spilling (``memory_bytes=N`` with a disk store): committed states stay in memory, as
  arrays, up to N bytes; past that the least recently used clients' states are written to
  their files. Small populations never touch the disk, large ones stay within N.

Every mode returns the same arrays for the same commits, so a run's model hash, metrics and
traffic are identical whichever is used.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedsim.codecs.wire import from_blob, to_blob
from fedsim.runtime.protocol import pack_state, unpack_state


class ClientStateStore:
    """`get(client) -> {name: array}`, `commit(client, frames)`, `restore(client, arrays)`,
    `clients()`.

    directory: keep the state on disk in this folder (created if missing; files this store
        wrote are removed by `close()` unless `keep=True`).
    disk: keep the state on disk in a fresh temporary folder (removed by `close()`).
    memory_bytes: with a folder, keep up to this many bytes of state in memory and spill the
        least recently used clients to disk (None: every commit goes to disk at once).
    """

    def __init__(
        self,
        directory: str | os.PathLike | None = None,
        *,
        disk: bool = False,
        keep: bool = False,
        memory_bytes: int | None = None,
    ) -> None:
        self._state: dict[int, dict[str, np.ndarray]] = {}
        self._files: dict[int, int] = {}  # client -> bytes on disk
        # spilling: client -> (arrays, bytes), least recently used first
        self._hot: OrderedDict[int, tuple[dict[str, np.ndarray], int]] = OrderedDict()
        self._hot_bytes = 0
        self._budget = memory_bytes
        self.spilled = 0  # states written out to make room (spilling mode)
        self._dir: Path | None = None
        self._own_dir = False
        self._keep = keep
        if directory is not None:
            self._dir = Path(directory)
            self._dir.mkdir(parents=True, exist_ok=True)
        elif disk:
            self._dir = Path(tempfile.mkdtemp(prefix="fedsim-state-"))
            self._own_dir = True
            if not keep:  # also removed if the owner never calls close()
                weakref.finalize(self, shutil.rmtree, str(self._dir), True)

    @property
    def on_disk(self) -> bool:
        return self._dir is not None

    @property
    def directory(self) -> Path | None:
        return self._dir

    def _path(self, client: int) -> Path:
        assert self._dir is not None
        return self._dir / f"client-{int(client):08d}.state"

    def get(self, client: int) -> dict[str, np.ndarray]:
        if self._dir is None:
            return self._state.get(client, {})
        hot = self._hot.get(client)
        if hot is not None:
            self._hot.move_to_end(client)
            return hot[0]
        size = self._files.get(client)
        if size is None:
            return {}
        buf = bytearray(size)
        with open(self._path(client), "rb") as fh:
            if fh.readinto(buf) != size:
                raise OSError(f"client state file {self._path(client)} was truncated")
        # frames are views of buf; unpack_state validates and copies into fresh arrays
        return unpack_state(from_blob(buf))

    def commit(self, client: int, frames: Sequence[Any]) -> None:
        if not frames:
            return
        if self._dir is None:
            self._state[client] = unpack_state(frames)
            return
        arrays = unpack_state(frames)  # validate before it replaces the committed state
        if self._budget is None:
            self._write(client, to_blob(frames))
            return
        old = self._hot.pop(client, None)
        if old is not None:
            self._hot_bytes -= old[1]
        size = sum(a.nbytes for a in arrays.values())
        self._hot[client] = (arrays, size)
        self._hot_bytes += size
        while self._hot_bytes > self._budget and self._hot:
            c, (st, n) = self._hot.popitem(last=False)
            self._write(c, to_blob(pack_state(st)))
            self._hot_bytes -= n
            self.spilled += 1

    def _write(self, client: int, blob: bytes) -> None:
        path = self._path(client)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(blob)
        os.replace(tmp, path)  # a crash never leaves a half-written state file
        self._files[client] = len(blob)

    def restore(self, client: int, state: dict[str, np.ndarray]) -> None:
        """Put back a client's state as arrays (from a checkpoint): same as committing it."""
        if state:
            self.commit(client, pack_state(state))

    def clients(self) -> list[int]:
        if self._dir is None:
            return sorted(self._state)
        return sorted(self._files.keys() | self._hot.keys())

    def nbytes(self) -> int:
        """Bytes of committed state (on disk, or held in memory); a spilled client whose
        newer state is in memory counts both."""
        if self._dir is not None:
            return sum(self._files.values()) + self._hot_bytes
        return sum(a.nbytes for st in self._state.values() for a in st.values())

    def close(self) -> None:
        """Forget every client; remove this store's files unless asked to keep them."""
        if self._dir is not None and not self._keep:
            if self._own_dir:
                shutil.rmtree(self._dir, ignore_errors=True)
            else:
                for c in self._files:
                    self._path(c).unlink(missing_ok=True)
        self._state.clear()
        self._files.clear()
        self._hot.clear()
        self._hot_bytes = 0

    def __enter__(self) -> ClientStateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
