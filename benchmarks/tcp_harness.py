"""tcp_harness: the flow-level network model against real TCP on shaped loopback (needs root).

A validation harness, not part of the library: it lives in benchmarks/ and uses
``fedsim.network`` (the model) and ``fedsim.codecs.wire`` (real messages) from outside.

The harness builds, in a private network namespace, the two-level topology the max-min
model assumes, and measures it:

- the namespace's ``lo`` (MTU 1500) gets an htb root with one parent class, the server's
  incoming link (rate = ceil = ``server_bps``), and one child class per simulated device,
  selected by the TCP destination port of that device's connection, whose ceiling is the
  device's uplink rate. Children have equal quanta and equal (or, below it, their ceiling)
  guaranteed rates, so the parent's spare capacity is shared by deficit round robin in
  equal bytes: water-filling, i.e. max-min with per-device caps. ACKs and the control
  traffic match no filter and are not shaped;
- one process inside the namespace (``python benchmarks/tcp_harness.py _inside``) opens
  one ZeroMQ PUSH -> PULL tcp connection per device on 127.0.0.1 (long-lived, warmed up
  with one small message, as fedsim's runtime keeps them), sends real fedsim wire-format
  messages (``fedsim.codecs.wire.pack_message``: a msgpack header frame plus a float32
  buffer frame) at the planned times, and timestamps each message when its last frame has
  been received (``time.monotonic``);
- the same transfers (same devices, the measured send times, ``wire_bytes`` of the real
  frames) go through :class:`fedsim.network.links.StarNetwork` (by default with fedsim's
  default bandwidth factor and per-message overhead, latency = half the measured round
  trip), and the per-message completion times (delivery - send) are compared.

The namespace is removed on every exit path (``try/finally`` and ``atexit``; names are
``fedsim-val-<pid>-<random>``, and stale ones whose creating process is gone are removed
when a new run starts). Nothing outside the namespace is ever a target.

``sudo python benchmarks/tcp_harness.py`` runs a small check; ``benchmarks/netns_sweep.py``
runs the full sweep; tests/network/test_netns_validation.py loads this file by path;
docs/network-validation.md has the results and the method.
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import simpy
import zmq
from fedsim.codecs.wire import TensorRecord, pack_message, unpack_message, wire_bytes
from fedsim.network.devices import DeviceProfile
from fedsim.network.links import (
    DEFAULT_BANDWIDTH_FACTOR,
    DEFAULT_MESSAGE_OVERHEAD_S,
    UP,
    DevicePaths,
    StarNetwork,
)
from fedsim.network.transport import pid_alive

__all__ = [
    "Transfer",
    "Case",
    "CaseResult",
    "Namespace",
    "unavailable_reason",
    "cleanup_stale",
    "simulate",
    "measure",
    "run_case",
    "summarize",
    "HTB_OVERHEAD_FACTOR",
    "cli_can_run",
]

NS_PREFIX = "fedsim-val-"
BASE_PORT = 40000  # device i's connection goes to 127.0.0.1:BASE_PORT + i (shaped)
CTRL_PORT = 39999  # round-trip probe, unshaped
MTU = 1500
HARNESS = Path(__file__).resolve()  # run again inside the namespace: `python HARNESS _inside`

#: Usable fraction of an htb rate for TCP payload on an MTU-1500 loopback: htb counts
#: whole frames (14 B Ethernet + 20 B IPv4 + 32 B TCP with timestamps + 1448 B payload),
#: so 1448 / 1514 of the rate carries payload.
HTB_OVERHEAD_FACTOR = 1448 / 1514


# ---- cases ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transfer:
    """One message: device ``device`` starts sending ``nbytes`` of tensor data at ``start_s``."""

    device: int
    start_s: float
    nbytes: int


@dataclass(frozen=True)
class Case:
    """Devices (uplink rates, bit/s) sharing the server's incoming link of ``server_bps``."""

    name: str
    server_bps: float
    device_bps: tuple[float, ...]
    transfers: tuple[Transfer, ...]

    def __post_init__(self) -> None:
        if not self.device_bps or len(self.device_bps) > 200:
            raise ValueError("a case needs 1..200 devices")
        for t in self.transfers:
            if not 0 <= t.device < len(self.device_bps):
                raise ValueError(f"transfer for unknown device {t.device}")


@dataclass
class CaseResult:
    case: Case
    measured_s: list[float]  # per transfer: last frame received - send call
    simulated_s: list[float]  # per transfer: model delivery - send
    send_s: list[float]  # measured send times relative to the first send
    wire_bytes: list[int]
    rtt_s: float
    tcp_cc: str
    extra: dict = field(default_factory=dict)

    @property
    def errors(self) -> list[float]:
        """Relative error of the model per transfer: (simulated - measured) / measured."""
        return [(s - m) / m for s, m in zip(self.simulated_s, self.measured_s, strict=True)]


def _frames(nbytes: int, device: int, seq: int, pool: np.ndarray) -> list:
    """A real fedsim update message carrying ``nbytes`` of float32 data (a view of ``pool``)."""
    n = max(nbytes // 4, 0)
    rec = TensorRecord("w", "raw", (n,), {}, (pool[:n],))
    return pack_message("update", {"client": device, "seq": seq}, [rec])


def message_wire_bytes(case: Case) -> list[int]:
    """Bytes each transfer puts on its ZeroMQ connection (what the model is given)."""
    pool = np.zeros(max((t.nbytes for t in case.transfers), default=0) // 4 + 1, np.float32)
    seqs = [0] * len(case.device_bps)
    out = []
    for t in case.transfers:
        out.append(wire_bytes(_frames(t.nbytes, t.device, seqs[t.device], pool)))
        seqs[t.device] += 1
    return out


# ---- the model side ---------------------------------------------------------------------


def simulate(
    case: Case,
    send_s: Sequence[float],
    nbytes: Sequence[int],
    *,
    bandwidth_factor: float,
    latency_s: float = 0.0,
    message_overhead_s: float = 0.0,
) -> list[float]:
    """Completion time (delivery - send) of each transfer in fedsim's flow-level model."""
    devices = [
        DeviceProfile(
            name=f"dev{i}",
            up_bps=r,
            down_bps=r,
            rtt_s=2 * latency_s,
            flops=1.0,
            latency_s=latency_s,
        )
        for i, r in enumerate(case.device_bps)
    ]
    env = simpy.Environment()
    paths = DevicePaths(
        devices,
        bandwidth_factor=bandwidth_factor,
        latency_factor=1.0,
        message_overhead_s=message_overhead_s,
    )
    net = StarNetwork(env, paths, case.server_bps, case.server_bps)
    done: dict[int, float] = {}

    def start(k: int, device: int, size: int):
        def go(_event) -> None:
            net.send(device, UP, size, lambda m: done.__setitem__(m.tag, env.now), tag=k)

        return go

    for k, (t, s, size) in enumerate(zip(case.transfers, send_s, nbytes, strict=True)):
        env.timeout(s).callbacks.append(start(k, t.device, size))
    env.run()
    return [done[k] - send_s[k] for k in range(len(case.transfers))]


# ---- the namespace ----------------------------------------------------------------------


def unavailable_reason() -> str | None:
    """Why the harness cannot run here (``None`` when it can)."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "creating a network namespace and shaping it with tc needs root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` (iproute2) is not installed"
    return None


def _run(cmd: Sequence[str], *, check: bool = True, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(list(cmd), capture_output=True, text=True, **kw)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


def _netns_names() -> list[str]:
    res = _run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in res.stdout.splitlines() if line.strip()]


def cleanup_stale() -> list[str]:
    """Remove ``fedsim-val-<pid>-*`` namespaces whose creating process no longer exists."""
    removed = []
    for name in _netns_names():
        if not name.startswith(NS_PREFIX):
            continue
        pid_part = name[len(NS_PREFIX) :].split("-", 1)[0]
        if pid_part.isdigit() and not pid_alive(int(pid_part)):
            _run(["ip", "netns", "del", name], check=False)
            removed.append(name)
    return removed


class Namespace:
    """A private network namespace with ``lo`` up at MTU 1500; removed on every exit path."""

    def __init__(self, *, gso_max_segs: int | None = 1, tcp_cc: str | None = None) -> None:
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        cleanup_stale()
        self.name = f"{NS_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self._alive = False
        self.gso_max_segs = gso_max_segs
        self.tcp_cc = tcp_cc  # congestion control inside the namespace (None: inherited)

    def __enter__(self) -> Namespace:
        _run(["ip", "netns", "add", self.name])
        self._alive = True
        atexit.register(self.close)
        try:
            _run(["ip", "-n", self.name, "link", "set", "lo", "mtu", str(MTU)])
            if self.gso_max_segs is not None:
                # One MTU-sized packet per skb, as on a wire: htb then releases data packet
                # by packet instead of in 64 KB GSO bursts (see docs/network-validation.md).
                _run(["ip", "-n", self.name, "link", "set", "lo",
                      "gso_max_segs", str(self.gso_max_segs)])  # fmt: skip
            if self.tcp_cc is not None:  # a per-namespace sysctl
                _run(["ip", "netns", "exec", self.name, "sysctl", "-q", "-w",
                      f"net.ipv4.tcp_congestion_control={self.tcp_cc}"])  # fmt: skip
            _run(["ip", "-n", self.name, "link", "set", "lo", "up"])
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._alive:
            self._alive = False
            _run(["ip", "netns", "del", self.name], check=False)
            try:
                atexit.unregister(self.close)
            except Exception:  # pragma: no cover - interpreter shutting down
                pass

    def tc(self, *args: str) -> None:
        _run(["tc", "-n", self.name, *args])

    def shape(self, case: Case, quantum: int = 1514) -> None:
        """htb: parent class = server link; one child per device (ceil = its rate) by port."""
        self.tc("qdisc", "replace", "dev", "lo", "root", "handle", "1:", "htb")
        s = int(case.server_bps)
        self.tc("class", "add", "dev", "lo", "parent", "1:", "classid", "1:1", "htb",
                "rate", f"{s}bit", "ceil", f"{s}bit")  # fmt: skip
        n = len(case.device_bps)
        for i, bps in enumerate(case.device_bps):
            ceil = int(bps)
            rate = max(min(ceil, s // n), 8000)
            self.tc("class", "add", "dev", "lo", "parent", "1:1", "classid", f"1:{0x10 + i:x}",
                    "htb", "rate", f"{min(rate, ceil)}bit", "ceil", f"{ceil}bit",
                    "quantum", str(quantum))  # fmt: skip
            self.tc("filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1",
                    "u32", "match", "ip", "dport", str(BASE_PORT + i), "0xffff",
                    "flowid", f"1:{0x10 + i:x}")  # fmt: skip

    def unshape(self) -> None:
        _run(["tc", "-n", self.name, "qdisc", "del", "dev", "lo", "root"], check=False)

    def tc_stats(self) -> str:
        return _run(["tc", "-n", self.name, "-s", "class", "show", "dev", "lo"], check=False).stdout

    def python(self, args: Sequence[str], stdin: str, timeout: float) -> str:
        cmd = ["ip", "netns", "exec", self.name, sys.executable, str(HARNESS), *args]
        res = _run(cmd, check=False, input=stdin, timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError(f"inside the namespace: {res.stderr.strip()[-2000:]}")
        return res.stdout


# ---- measurement ------------------------------------------------------------------------


def measure(ns: Namespace, case: Case, *, realtime: bool = True, timeout: float = 300.0) -> dict:
    """Shape ``ns`` for ``case``, send its transfers for real, return the raw timings."""
    ns.shape(case)
    try:
        plan = {
            "n_devices": len(case.device_bps),
            "transfers": [[t.device, t.start_s, t.nbytes] for t in case.transfers],
            "realtime": realtime,
        }
        out = ns.python(["_inside"], json.dumps(plan), timeout)
        result = json.loads(out)
        result["tc_stats"] = ns.tc_stats()
        return result
    finally:
        ns.unshape()


def run_case(
    ns: Namespace,
    case: Case,
    *,
    bandwidth_factor: float = DEFAULT_BANDWIDTH_FACTOR,
    latency_s: float | None = None,
    message_overhead_s: float = DEFAULT_MESSAGE_OVERHEAD_S,
    realtime: bool = True,
) -> CaseResult:
    """Measure a case on the shaped loopback and simulate it with the measured send times.

    The model runs with fedsim's defaults unless told otherwise; ``latency_s`` defaults to
    half the measured loopback round trip.
    """
    raw = measure(ns, case, realtime=realtime)
    t_send, t_recv = raw["t_send"], raw["t_recv"]
    t0 = min(t_send)
    send_s = [t - t0 for t in t_send]
    measured = [r - s for s, r in zip(t_send, t_recv, strict=True)]
    lat = raw["rtt_s"] / 2 if latency_s is None else latency_s
    simulated = simulate(
        case,
        send_s,
        raw["wire_bytes"],
        bandwidth_factor=bandwidth_factor,
        latency_s=lat,
        message_overhead_s=message_overhead_s,
    )
    return CaseResult(
        case, measured, simulated, send_s, raw["wire_bytes"], raw["rtt_s"], raw["cc"],
        {"load": os.getloadavg()},
    )  # fmt: skip


def summarize(results: Sequence[CaseResult]) -> dict:
    errs = [abs(e) for r in results for e in r.errors]
    return {
        "n": len(errs),
        "median_abs_error": statistics.median(errs) if errs else math.nan,
        "worst_abs_error": max(errs) if errs else math.nan,
    }


# ---- inside the namespace ---------------------------------------------------------------


def _inside(plan: dict) -> dict:
    """Runs inside the namespace: one PUSH->PULL tcp connection per device, timed sends."""
    if plan.get("realtime"):
        try:  # blocked in poll almost all the time; keeps a loaded machine's run queue out
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        except (OSError, AttributeError):
            pass
    n_dev = plan["n_devices"]
    transfers = plan["transfers"]
    ctx = zmq.Context(io_threads=2)
    try:
        pulls = [_socket(ctx, zmq.PULL, "bind", i) for i in range(n_dev)]
        pushes = [_socket(ctx, zmq.PUSH, "connect", i) for i in range(n_dev)]
        # Warm up every connection (handshake done, as in fedsim's long-lived runtime).
        for i, s in enumerate(pushes):
            s.send_multipart(pack_message("hello", {"client": i}, []))
        for s in pulls:
            if not s.poll(30000):
                raise RuntimeError("warm-up message not received")
            s.recv_multipart()
        rtt = _probe_rtt(ctx)
        pool = np.zeros(max((t[2] for t in transfers), default=0) // 4 + 1, np.float32)
        seqs = [0] * n_dev
        msgs = []
        for dev, _start, nbytes in transfers:
            frames = _frames(nbytes, dev, seqs[dev], pool)
            seqs[dev] += 1
            msgs.append(frames)
        order = sorted(range(len(transfers)), key=lambda k: (transfers[k][1], k))
        expect: list[list[int]] = [[] for _ in range(n_dev)]
        for k in order:
            expect[transfers[k][0]].append(k)
        t_send = [math.nan] * len(transfers)
        t_recv = [math.nan] * len(transfers)
        poller = zmq.Poller()
        for s in pulls:
            poller.register(s, zmq.POLLIN)
        sock_dev = {s: i for i, s in enumerate(pulls)}
        pending = len(transfers)
        nxt = 0
        t0 = time.monotonic() + 0.05
        deadline = t0 + 600.0
        while pending:
            now = time.monotonic()
            while nxt < len(order) and t0 + transfers[order[nxt]][1] <= now:
                k = order[nxt]
                t_send[k] = time.monotonic()
                pushes[transfers[k][0]].send_multipart(msgs[k], copy=False)
                nxt += 1
                now = time.monotonic()
            wait = 1000.0
            if nxt < len(order):
                wait = max(0.0, (t0 + transfers[order[nxt]][1] - now) * 1000.0)
            for sock, _ev in poller.poll(math.ceil(wait) if wait < 1000 else 1000):
                frames = sock.recv_multipart(copy=False)
                t = time.monotonic()
                dev = sock_dev[sock]
                k = expect[dev].pop(0)
                msg = unpack_message([f.buffer for f in frames])
                if msg.meta.get("seq") is None or msg.meta["client"] != dev:
                    raise RuntimeError("message arrived on the wrong connection")
                t_recv[k] = t
                pending -= 1
            if time.monotonic() > deadline:
                raise RuntimeError("transfers did not complete within 600 s")
        cc = open("/proc/sys/net/ipv4/tcp_congestion_control").read().strip()
        return {
            "t_send": t_send,
            "t_recv": t_recv,
            "wire_bytes": [wire_bytes(m) for m in msgs],
            "rtt_s": rtt,
            "cc": cc,
        }
    finally:
        ctx.destroy(linger=0)


def _socket(ctx: zmq.Context, kind: int, how: str, device: int) -> zmq.Socket:
    """A PULL (bound) or PUSH (connected) end of device ``device``'s connection."""
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM if kind == zmq.PULL else zmq.SNDHWM, 0)
    getattr(sock, how)(f"tcp://127.0.0.1:{BASE_PORT + device}")
    return sock


def _probe_rtt(ctx: zmq.Context, n: int = 50) -> float:
    """Median round trip of a tiny ZeroMQ message on the (unshaped) namespace loopback."""
    rep = ctx.socket(zmq.REP)
    req = ctx.socket(zmq.REQ)
    try:
        rep.bind(f"tcp://127.0.0.1:{CTRL_PORT}")
        req.connect(f"tcp://127.0.0.1:{CTRL_PORT}")
        samples = []
        for _ in range(n + 5):
            t = time.monotonic()
            req.send(b"p")
            rep.recv()
            rep.send(b"q")
            req.recv()
            samples.append(time.monotonic() - t)
        return statistics.median(samples[5:])
    finally:
        rep.close(0)
        req.close(0)


# ---- command line -----------------------------------------------------------------------


def format_table(results: Sequence[CaseResult]) -> str:
    lines = [
        "| case | device | Mbit/s | MB | start s | simulated s | measured s | error |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for t, s, m, e, st in zip(
            r.case.transfers, r.simulated_s, r.measured_s, r.errors, r.send_s, strict=True
        ):
            lines.append(
                f"| {r.case.name} | {t.device} | {r.case.device_bps[t.device] / 1e6:g} | "
                f"{t.nbytes / 1e6:g} | {st:.2f} | {s:.3f} | {m:.3f} | {e * 100:+.1f} % |"
            )
    return "\n".join(lines)


def _on_sigterm(signum, _frame):  # make SIGTERM run finally blocks and atexit
    raise SystemExit(128 + signum)


def cli_can_run() -> bool:
    """For command-line tools: say why the harness cannot run, or prepare to run it.

    Prints the reason and returns False without root or ``ip``/``tc``; otherwise makes
    SIGTERM unwind (so the namespace is removed) and returns True.
    """
    reason = unavailable_reason()
    if reason:
        print(f"skipped: {reason}")
        return False
    signal.signal(signal.SIGTERM, _on_sigterm)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_inside"]:
        json.dump(_inside(json.load(sys.stdin)), sys.stdout)
        return 0
    p = argparse.ArgumentParser(prog="python benchmarks/tcp_harness.py", description=__doc__)
    p.add_argument("--bandwidth-factor", type=float, default=DEFAULT_BANDWIDTH_FACTOR)
    p.add_argument(
        "--message-overhead", type=float, default=DEFAULT_MESSAGE_OVERHEAD_S, help="seconds"
    )
    args = p.parse_args(argv)
    if not cli_can_run():
        return 0
    cases = [
        Case("single", 100e6, (20e6,), (Transfer(0, 0.0, 5_000_000),)),
        Case(
            "fair-4",
            40e6,
            (100e6, 100e6, 100e6, 8e6),
            tuple(Transfer(i, 0.0, 3_000_000) for i in range(4)),
        ),
    ]
    with Namespace() as ns:
        results = [
            run_case(
                ns,
                c,
                bandwidth_factor=args.bandwidth_factor,
                message_overhead_s=args.message_overhead,
            )
            for c in cases
        ]
    print(format_table(results))
    print(json.dumps(summarize(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
