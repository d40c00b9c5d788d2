"""Ray's local processes die with the coordinator that started them, even on SIGKILL.

`ray.init()` without an address starts a Ray instance for the run; Ray ends its head
processes with the driver, but the agents the raylet starts (`ray::DashboardAgent`,
`ray::RuntimeEnvAgent`) outlive a killed driver. The executor starts this script (by path,
standard library only: no fedsim, no torch) with a pipe on its stdin. Every half second it
records the processes of the run's Ray session: those whose command line names the session,
and everything below them. When the pipe closes — the executor closed it after
`ray.shutdown()`, or the kernel did because the coordinator died — it sends SIGTERM to every
recorded process still running (the same process: same start time), waits up to 3 s, sends
SIGKILL to what is left, and exits. Linux only (/proc); elsewhere it only waits.

    python ray_watchdog.py SESSION_NAME
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

POLL_S = 0.5
GRACE_S = 3.0


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(ppid, start time, state) of pid, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()  # after "pid (comm) "
    return int(fields[1]), int(fields[19]), fields[0]


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def session_processes(session: str) -> dict[int, int]:
    """pid -> start time of the session's processes and all their descendants."""
    me = os.getpid()
    uid = os.getuid()
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    roots = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        st = _stat(pid)
        try:
            owner = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue
        if st is None or owner != uid:
            continue
        children.setdefault(st[0], []).append(pid)
        starts[pid] = st[1]
        if session in _cmdline(pid):
            roots.append(pid)
    found: dict[int, int] = {}
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid in found or pid == me:
            continue
        found[pid] = starts[pid]
        todo.extend(children.get(pid, ()))
    return found


def _running(pid: int, start: int) -> bool:
    st = _stat(pid)
    return st is not None and st[1] == start and st[2] != "Z"


def sweep(known: dict[int, int]) -> None:
    alive = {p: s for p, s in known.items() if _running(p, s)}
    for sig, wait in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, 0.0)):
        for pid in alive:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = {p: s for p, s in alive.items() if _running(p, s)}
        if not alive:
            return


def main(session: str) -> int:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # only the pipe ends us (Ctrl-C reaches the group)
    linux = os.path.isdir("/proc/self")
    known: dict[int, int] = {}
    while True:
        ready, _, _ = select.select([sys.stdin.fileno()], [], [], POLL_S)
        if ready and not os.read(sys.stdin.fileno(), 4096):
            break  # EOF: the coordinator is done with Ray, or dead
        if linux:
            known.update(session_processes(session))
    if linux:
        known.update(session_processes(session))
        sweep(known)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
