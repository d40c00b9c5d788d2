"""One run per output directory: an exclusive lock held for the whole of `fedsim run`.

The lock is `flock(2)` on `OUT/.fedsim.lock`, so the kernel drops it when the holder dies,
however it dies: a stale file never blocks anybody. The file names the holder (pid, host,
start time) for the message a second run prints. On release the file is removed while the
lock is still held; an acquirer that locked a file unlinked under it (same path, other
inode) tries again, so two runs can never both believe they hold the directory.
flock works across processes of one host and on local file systems; NFS maps it to fcntl
byte-range locks (Linux >= 2.6.12), which also exclude processes of other hosts.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from fedsim.errors import FedsimError

LOCK_NAME = ".fedsim.lock"


class RunDirBusy(FedsimError):
    """Another process holds the output directory."""


class RunDirLock:
    """`with RunDirLock(out):` -- the directory is created if needed and held until exit."""

    def __init__(self, out_dir: str | Path):
        self.dir = Path(out_dir)
        self.path = self.dir / LOCK_NAME
        self._fd: int | None = None
        self._created = False

    def acquire(self) -> RunDirLock:
        if self.dir.exists() and not self.dir.is_dir():
            raise FedsimError(f"--out {self.dir}: exists and is not a directory")
        self._created = not self.dir.exists()
        self.dir.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise RunDirBusy(
                    f"--out {self.dir}: in use by another fedsim run ({holder}); wait for it "
                    "to finish or choose another --out"
                ) from None
            except OSError as e:
                os.close(fd)
                raise FedsimError(f"--out {self.dir}: cannot lock {self.path}: {e}") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # released and removed by its holder between our open and flock
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
        if self._created:  # a run refused before writing anything leaves no empty folder
            with contextlib.suppress(OSError):
                self.dir.rmdir()

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    """'pid 123 on host h since 12:00:01' from the lock file, or what can be said without it
    (the holder writes it right after locking; a reader may come in between)."""
    for _ in range(20):
        try:
            info = json.loads(os.pread(fd, 4096, 0).decode() or "null")
        except (OSError, ValueError):
            info = None
        if isinstance(info, dict):
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
            return f"pid {info.get('pid')} on host {info.get('host')} since {since}"
        time.sleep(0.01)
    return "holder unknown"
