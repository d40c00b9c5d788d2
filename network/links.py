"""Flow-level links driven by simpy: max-min fair sharing of the server's links.

fedsim's network is a star. Each device has an uplink and a downlink; the server has an
incoming capacity (the clients' upload direction, "up") and an outgoing one ("down"). A
download crosses server-out + device-down, an upload crosses device-up + server-in. Between
the server and one device there is one connection per direction (ZeroMQ keeps one TCP
connection per peer), so messages on it are sent one after the other and delivered in
order, and each device link carries at most one flow. Max-min fairness (progressive
filling, see :func:`fedsim.network.maxmin.maxmin_rates`) on such a star is water-filling
on each server link: with per-flow caps ``b_i`` (device link, loss bound) a flow's rate is
``min(b_i, λ)`` where ``Σ min(b_i, λ) = C``. Rates change on every flow start and finish.

:class:`SharedLink` keeps that allocation incrementally, so an event costs O(log n) instead
of O(n): flows whose cap is below the level (``capped``) keep their own constant rate and
a fixed finish time; flows at the level all progress at the same rate ``λ``, so they are
kept on a common virtual clock ``V = ∫ λ dt`` and finish when ``V`` reaches their target.
When a start or finish moves ``λ``, only the flows that cross it change class.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from heapq import heappop, heappush
from typing import Any, Protocol

import simpy
from simpy.events import NORMAL as _NORMAL

from .maxmin import mathis_rate

__all__ = [
    "UP",
    "DOWN",
    "SIMGRID_BANDWIDTH_FACTOR",
    "SIMGRID_LATENCY_FACTOR",
    "DEFAULT_BANDWIDTH_FACTOR",
    "DEFAULT_LATENCY_FACTOR",
    "DEFAULT_MSS",
    "DEFAULT_MESSAGE_OVERHEAD_S",
    "Message",
    "SharedLink",
    "DevicePaths",
    "StarNetwork",
    "unit_hash",
]

UP = 0  #: device -> server: device uplink + server incoming link
DOWN = 1  #: server -> device: server outgoing link + device downlink

#: SimGrid's validated LV08 settings (Velho & Legrand, "Accuracy study and improvement of
#: network simulation in the SimGrid framework", SIMUTools 2009): usable fraction of the
#: nominal bandwidth, and the factor on latency that stands for TCP slow start.
SIMGRID_BANDWIDTH_FACTOR = 0.97
SIMGRID_LATENCY_FACTOR = 13.01

#: fedsim's defaults, measured on real TCP (docs/network-model.md says why,
#: docs/network-validation.md how): the usable-bandwidth factor is TCP's payload share of
#: an MTU-1500 frame with timestamps, 1448/1514 = 0.956 (unweighted fits of the real-TCP
#: calibration: 0.955-0.956); the per-message overhead is the fixed cost every message paid
#: beyond its bytes and the path's one-way latency (the sending call, ZeroMQ's I/O threads,
#: the receiver's wake-up; calibrations gave 1.4-1.9 ms). No slow-start correction on
#: latency: fedsim's connections are long-lived and its messages megabytes long.
DEFAULT_BANDWIDTH_FACTOR = 0.956
DEFAULT_LATENCY_FACTOR = 1.0
DEFAULT_MESSAGE_OVERHEAD_S = 1.5e-3
DEFAULT_MSS = 1460

_TIME_TOL = 1e-9  # events closer than this (seconds) coalesce
_REL_TOL = 1e-12  # relative slack in the level comparison, against float ping-pong


class _Call:
    """A simpy-compatible event that is only ever scheduled and run: one callback, a value.

    ``simpy.Environment.step`` needs ``callbacks``, ``_ok`` and ``_value`` of what it pops;
    this has just those, so scheduling costs one small object and one heap push instead of
    a ``Timeout`` (argument checks, an environment reference, a method call to schedule).
    """

    __slots__ = ("callbacks", "_value", "_ok")

    def __init__(self, callback: Callable[[Any], Any], value: Any):
        self.callbacks = [callback]
        self._value = value
        self._ok = True


def call_later(
    env: simpy.Environment, delay: float, callback: Callable[[Any], Any], value: Any = None
) -> None:
    """Run ``callback(event)`` (``event._value`` is ``value``) ``delay`` seconds from now.

    Ordered exactly as ``env.timeout(delay, value).callbacks.append(callback)`` would be:
    the same (time, priority, sequence number) key in simpy's own event queue.
    """
    if delay < 0:
        raise ValueError(f"negative delay {delay}")
    heappush(env._queue, (env._now + delay, _NORMAL, next(env._eid), _Call(callback, value)))


class Message:
    """One message on a connection. Times are simulated seconds; ``None`` until reached."""

    __slots__ = (
        "device",
        "direction",
        "nbytes",
        "t_send",
        "t_transmitted",
        "t_delivered",
        "delivered",
        "cancelled",
        "on_delivered",
        "tag",
        "_conn",
    )

    def __init__(self, device: int, direction: int, nbytes: int, t_send: float, on_delivered, tag):
        self.device = device
        self.direction = direction
        self.nbytes = nbytes
        self.t_send = t_send
        self.t_transmitted: float | None = None  # last byte left the sender
        self.t_delivered: float | None = None  # when the last byte reaches the receiver
        self.delivered = False  # ... and that moment has been simulated
        self.cancelled = False
        self.on_delivered: Callable[[Message], Any] | None = on_delivered
        self.tag = tag
        self._conn: _Conn | None = None

    def __repr__(self) -> str:
        way = "up" if self.direction == UP else "down"
        return f"Message(device={self.device}, {way}, {self.nbytes} B, sent {self.t_send})"


class _Conn:
    """A connection's state on its shared link: the message queue and the flow's class."""

    __slots__ = (
        "order",
        "cap",
        "queue",
        "active",
        "capped",
        "key",
        "epoch",
        "cls_epoch",
        "n_sent",
        "last_delivery",
    )

    def __init__(self, order: int, cap: float):
        self.order = order  # unique, deterministic tie-break in the heaps
        self.cap = cap  # bytes/s: device link x bandwidth factor, and the loss bound
        self.queue: deque[Message] = deque()
        self.active = False
        self.capped = False
        # Finish of the head message: a time when capped, a virtual-clock value when not.
        self.key = 0.0
        self.epoch = 0  # version of ``key`` (finish-heap entries)
        self.cls_epoch = 0  # version of the class (level-heap entries)
        self.n_sent = 0
        self.last_delivery = -math.inf


class SharedLink:
    """One server link of capacity ``capacity`` (bytes/s) shared max-min fairly.

    ``on_transmitted(msg)`` is called when a message's last byte has crossed the link.
    """

    def __init__(
        self, env: simpy.Environment, capacity: float, on_transmitted: Callable[[Message], Any]
    ):
        if not capacity > 0:
            raise ValueError(f"link capacity must be > 0 bytes/s, got {capacity}")
        self.env = env
        self.capacity = capacity
        self.on_transmitted = on_transmitted
        self.level = math.inf  # λ: rate of every uncapped flow
        self.n_uncapped = 0
        self.n_capped = 0
        self.capped_sum = 0.0  # Σ caps of capped flows
        self._v = 0.0  # virtual clock of the uncapped flows: ∫ λ dt
        self._t = env.now  # when ``_v`` was last brought up to date
        self._below: list = []  # capped flows, max-heap by cap: (-cap, order, cls_epoch, conn)
        self._above: list = []  # uncapped flows, min-heap by cap
        self._fin_t: list = []  # capped flows by finish time: (t, order, epoch, conn)
        self._fin_v: list = []  # uncapped flows by virtual finish: (v, order, epoch, conn)
        self._wake_at = math.inf

    # -- public -----------------------------------------------------------------------

    def rate(self, conn: _Conn) -> float:
        """Current rate of a connection in bytes/s (0 when idle)."""
        if not conn.active:
            return 0.0
        return conn.cap if conn.capped else self.level

    def send(self, conn: _Conn, msg: Message) -> None:
        msg._conn = conn
        conn.queue.append(msg)
        if conn.active:
            return  # it waits behind the messages already queued: no rate changes
        now = self.env._now  # (simpy's clock; the property costs a call per read)
        n = self.n_uncapped
        if n:
            self._v += self.level * (now - self._t)
        self._t = now
        conn.active = True
        conn.cls_epoch = cls_epoch = conn.cls_epoch + 1
        conn.epoch = epoch = conn.epoch + 1
        cap = conn.cap
        if cap * (n + 1) < (self.capacity - self.capped_sum) * (1.0 - _REL_TOL):
            # Below the level it would get as one more uncapped flow: it is capped.
            conn.capped = True
            conn.key = t_fin = now + msg.nbytes / cap
            self.n_capped += 1
            self.capped_sum += cap
            heappush(self._fin_t, (t_fin, conn.order, epoch, conn))
            heappush(self._below, (-cap, conn.order, cls_epoch, conn))
            if n or self.capped_sum > self.capacity:
                self._rebalance()  # λ fell: capped flows near it may have to join λ
            else:
                self.level = math.inf  # every flow fits under its own cap
        else:
            conn.capped = False
            conn.key = key = self._v + msg.nbytes
            self.n_uncapped = n + 1
            heappush(self._fin_v, (key, conn.order, epoch, conn))
            heappush(self._above, (cap, conn.order, cls_epoch, conn))
            if self.n_capped:
                self._rebalance()
            else:  # nothing can cross: λ only fell, and every uncapped cap is above it
                self.level = (self.capacity - self.capped_sum) / (n + 1)
            t_fin = now + msg.nbytes / self.level
        # A new flow never speeds up the others, so only its own finish can be earlier
        # than the wake-up already armed.
        if t_fin < self._wake_at:
            self._wake_at = t_fin
            call_later(self.env, t_fin - now, self._wake)

    def cancel(self, msg: Message) -> None:
        """Take a message off its connection; its unsent bytes free their share at once."""
        conn = msg._conn
        if conn is None or msg.t_transmitted is not None or msg.cancelled:
            return
        queue = conn.queue
        if queue[0] is not msg:
            queue.remove(msg)
            return
        self._advance()
        queue.popleft()
        if queue:
            self._set_head(conn, self.env.now, self._v, queue[0].nbytes)
        else:
            self._deactivate(conn)
            self._rebalance()
        self._reschedule()

    # -- the allocation ------------------------------------------------------------------

    def _advance(self) -> None:
        now = self.env._now
        if self.n_uncapped:
            self._v += self.level * (now - self._t)
        self._t = now

    def _set_head(self, conn: _Conn, t: float, v: float, nbytes: float) -> None:
        """The connection's next message starts at time ``t`` / virtual time ``v``."""
        conn.epoch += 1
        if conn.capped:
            conn.key = t + nbytes / conn.cap
            heappush(self._fin_t, (conn.key, conn.order, conn.epoch, conn))
        else:
            conn.key = v + nbytes
            heappush(self._fin_v, (conn.key, conn.order, conn.epoch, conn))

    def _deactivate(self, conn: _Conn) -> None:
        conn.active = False
        conn.epoch += 1
        conn.cls_epoch += 1
        if conn.capped:
            self.capped_sum -= conn.cap
            self.n_capped -= 1
            if not self.n_capped:
                self._below.clear()
                self._fin_t.clear()
                self.capped_sum = 0.0  # forget accumulated rounding
        else:
            self.n_uncapped -= 1
            if not self.n_uncapped:
                self._above.clear()
                self._fin_v.clear()
                self._v = 0.0

    def _rebalance(self) -> None:
        """Move flows between the classes until ``capped ⇔ cap < λ`` holds again.

        λ = (C − Σ capped caps) / #uncapped. Moving an uncapped flow with cap < λ to the
        capped class raises λ; so does moving a capped flow with cap ≥ λ the other way.
        λ never exceeds the true level, so it rises monotonically to it and every flow
        moves at most twice (whatever the changes since the last call).
        """
        below, above = self._below, self._above
        now = self.env._now
        capacity = self.capacity
        while True:
            n = self.n_uncapped
            if n:
                level = (capacity - self.capped_sum) / n
            else:
                level = math.inf if capacity >= self.capped_sum else -math.inf
            while above and above[0][3].cls_epoch != above[0][2]:
                heappop(above)
            if above and above[0][0] < level * (1.0 - _REL_TOL):
                conn = heappop(above)[3]
                remaining = conn.key - self._v
                conn.capped = True
                conn.cls_epoch += 1
                conn.epoch += 1
                conn.key = now + remaining / conn.cap
                self.n_uncapped -= 1
                self.n_capped += 1
                self.capped_sum += conn.cap
                heappush(below, (-conn.cap, conn.order, conn.cls_epoch, conn))
                heappush(self._fin_t, (conn.key, conn.order, conn.epoch, conn))
                continue
            while below and below[0][3].cls_epoch != below[0][2]:
                heappop(below)
            if below and -below[0][0] >= level:
                conn = heappop(below)[3]
                remaining = (conn.key - now) * conn.cap
                conn.capped = False
                conn.cls_epoch += 1
                conn.epoch += 1
                if not self.n_uncapped:
                    self._v = 0.0
                conn.key = self._v + remaining
                self.n_uncapped += 1
                self.n_capped -= 1
                self.capped_sum -= conn.cap
                heappush(above, (conn.cap, conn.order, conn.cls_epoch, conn))
                heappush(self._fin_v, (conn.key, conn.order, conn.epoch, conn))
                continue
            break
        self.level = level

    # -- time ----------------------------------------------------------------------------

    def _reschedule(self) -> None:
        """Arm a wake-up for the next finish unless an earlier one is already armed."""
        now = self.env._now
        t = math.inf
        fin = self._fin_t
        while fin and fin[0][3].epoch != fin[0][2]:
            heappop(fin)
        if fin:
            t = fin[0][0]
        fin = self._fin_v
        while fin and fin[0][3].epoch != fin[0][2]:
            heappop(fin)
        if fin:
            tv = now + (fin[0][0] - self._v) / self.level
            if tv < t:
                t = tv
        if t < self._wake_at:
            # An earlier wake-up already pending stays valid: it finds nothing and re-arms.
            self._wake_at = t
            delay = t - now
            call_later(self.env, delay if delay > 0.0 else 0.0, self._wake)

    def _wake(self, _event) -> None:
        now = self.env._now
        tol = _TIME_TOL + 1e-15 * abs(now)
        if now < self._wake_at - tol:
            return  # superseded by an earlier wake-up, which re-armed for later
        self._wake_at = math.inf
        self._advance()
        done: list[Message] = []
        changed = False
        fin = self._fin_t
        while fin:
            t, _, epoch, conn = fin[0]
            if conn.epoch != epoch:
                heappop(fin)
                continue
            if t > now + tol:
                break
            heappop(fin)
            changed |= self._finish_head(conn, t, done)
        fin = self._fin_v
        v_tol = self.level * tol + 4e-16 * abs(self._v) if self.n_uncapped else 0.0
        while fin:
            v, _, epoch, conn = fin[0]
            if conn.epoch != epoch:
                heappop(fin)
                continue
            if v > self._v + v_tol:
                break
            heappop(fin)
            changed |= self._finish_head(conn, v, done)
        if changed:
            self._rebalance()
        self._reschedule()
        for msg in done:
            self.on_transmitted(msg)

    def _finish_head(self, conn: _Conn, key: float, done: list[Message]) -> bool:
        """The head message is through; start the next from the exact boundary ``key``."""
        msg = conn.queue.popleft()
        msg.t_transmitted = self.env._now
        done.append(msg)
        if conn.queue:
            if conn.capped:
                self._set_head(conn, key, 0.0, conn.queue[0].nbytes)
            else:
                self._set_head(conn, 0.0, key, conn.queue[0].nbytes)
            return False
        self._deactivate(conn)
        return True


class _PathLike(Protocol):
    up_bps: float
    down_bps: float
    rtt_s: float
    jitter: float
    loss: float


class DevicePaths:
    """Per-device link parameters in the simulator's units, computed once per population.

    ``caps[direction][device]`` in bytes/s (device link × bandwidth factor, bounded by the
    Mathis loss bound); ``latency[device]`` one-way seconds × latency factor;
    ``delay[device]`` the fixed part of every message's delivery on that device, in either
    direction: latency + ``message_overhead_s``; ``jitter[device]`` mean extra one-way
    delay in seconds.
    """

    def __init__(
        self,
        devices: Sequence[_PathLike],
        *,
        bandwidth_factor: float = DEFAULT_BANDWIDTH_FACTOR,
        latency_factor: float = DEFAULT_LATENCY_FACTOR,
        mss: int = DEFAULT_MSS,
        message_overhead_s: float = DEFAULT_MESSAGE_OVERHEAD_S,
    ):
        if not 0.0 < bandwidth_factor <= 1.0:
            raise ValueError(f"bandwidth_factor must be in (0, 1], got {bandwidth_factor}")
        if not latency_factor >= 0.0:
            raise ValueError(f"latency_factor must be >= 0, got {latency_factor}")
        if not mss > 0:
            raise ValueError(f"mss must be > 0 bytes, got {mss}")
        if not 0.0 <= message_overhead_s < math.inf:
            raise ValueError(
                f"message_overhead_s must be >= 0 and finite, got {message_overhead_s}"
            )
        self.bandwidth_factor = bandwidth_factor
        self.latency_factor = latency_factor
        self.mss = mss
        self.message_overhead_s = message_overhead_s
        up, down, latency, jitter = [], [], [], []
        for i, d in enumerate(devices):
            if not (d.up_bps > 0 and d.down_bps > 0) or math.isinf(d.up_bps + d.down_bps):
                raise ValueError(f"device {i}: link rates must be finite and > 0")
            bound = mathis_rate(mss, d.rtt_s, d.loss)
            up.append(min(d.up_bps / 8.0 * bandwidth_factor, bound))
            down.append(min(d.down_bps / 8.0 * bandwidth_factor, bound))
            one_way = getattr(d, "latency_s", None)
            latency.append((d.rtt_s / 2.0 if one_way is None else one_way) * latency_factor)
            jitter.append(d.jitter)
        self.caps = (up, down)
        self.latency = latency
        self.delay = [lat + message_overhead_s for lat in latency]
        self.jitter = jitter

    def __len__(self) -> int:
        return len(self.latency)


class StarNetwork:
    """The server, its two shared links and one connection per device and direction.

    ``send`` queues a message; ``on_delivered(msg)`` runs when its last byte has reached the
    receiver: transmission (fair-shared) + one-way latency + per-message overhead + jitter,
    never before an earlier message on the same connection. Jitter draws are a hash of
    (``seed``, ``stream``, device, direction, message number on the connection), so they
    do not depend on the order of unrelated events.
    """

    def __init__(
        self,
        env: simpy.Environment,
        paths: DevicePaths,
        server_up_bps: float,
        server_down_bps: float,
        *,
        seed: int = 0,
        stream: int = 0,
        spare: list | None = None,
    ):
        self.env = env
        self.paths = paths
        bf = paths.bandwidth_factor
        self.links = (
            SharedLink(env, server_up_bps / 8.0 * bf, self._transmitted),
            SharedLink(env, server_down_bps / 8.0 * bf, self._transmitted),
        )
        self.seed = seed
        self.stream = stream
        self.events = 0  # model events: sends, transmissions, deliveries
        # This network's connections by ``2 * device + direction``. Spare connection
        # objects come from (and go back to, in ``close``) a free list the caller may lend,
        # so successive rounds reuse objects and nothing grows with the population.
        self._conns: dict[int, _Conn] = {}
        self._spare: list[_Conn] | None = spare
        self._hash_base = _mix(_mix(seed & _M64) ^ (stream & _M64))
        self._delay = paths.delay  # latency + per-message overhead
        self._jitter = paths.jitter

    def connection(self, device: int, direction: int) -> _Conn:
        order = 2 * device + direction
        conn = self._conns.get(order)
        if conn is None:
            caps = self.paths.caps[direction]
            if not 0 <= device < len(caps):
                raise IndexError(f"no device {device} (population of {len(caps)})")
            spare = self._spare
            if spare:
                conn = spare.pop()
                conn.order = order
                conn.cap = caps[device]
            else:
                conn = _Conn(order, caps[device])
            self._conns[order] = conn
        return conn

    def send(
        self,
        device: int,
        direction: int,
        nbytes: int,
        on_delivered: Callable[[Message], Any] | None = None,
        tag: Any = None,
    ) -> Message:
        if nbytes < 0:
            raise ValueError(f"message size must be >= 0 bytes, got {nbytes}")
        self.events += 1
        msg = Message(device, direction, nbytes, self.env._now, on_delivered, tag)
        order = 2 * device + direction
        conn = self._conns.get(order)
        if conn is None:
            conn = self.connection(device, direction)
        self.links[direction].send(conn, msg)
        return msg

    def cancel(self, msg: Message) -> None:
        """Drop a message: unsent bytes stop competing; if in flight, it is never delivered."""
        if msg.cancelled or msg.delivered:
            return
        self.links[msg.direction].cancel(msg)
        msg.cancelled = True

    def close(self) -> None:
        """Drop all state (and the reference cycles through it); the network is unusable after.
        Its connections are reset and handed to the lent free list, if any."""
        spare = self._spare
        for conn in self._conns.values():
            for msg in conn.queue:
                msg._conn = None
            conn.queue.clear()
            conn.active = False
            conn.capped = False
            conn.n_sent = 0
            conn.last_delivery = -math.inf
        if spare is not None:
            spare.extend(self._conns.values())
        self._conns.clear()
        for link in self.links:
            link.on_transmitted = None
            link._below.clear()
            link._above.clear()
            link._fin_t.clear()
            link._fin_v.clear()

    def rate(self, msg: Message) -> float:
        """Current sending rate of the connection carrying ``msg`` (bytes/s)."""
        conn = msg._conn
        return self.links[msg.direction].rate(conn) if conn is not None else 0.0

    def _transmitted(self, msg: Message) -> None:
        self.events += 1
        conn = msg._conn
        device = msg.device
        delay = self._delay[device]
        jitter = self._jitter[device]
        if jitter > 0.0:
            # One splitmix64 of (stream hash, connection, message number): a draw that does
            # not depend on the order of unrelated events.
            h = _mix(self._hash_base ^ (conn.order << 24) ^ conn.n_sent)
            u = ((h >> 11) + 0.5) / 9007199254740992.0  # uniform in (0, 1)
            delay -= jitter * math.log(u)  # exponential extra delay, mean ``jitter``
        conn.n_sent += 1
        now = self.env._now
        t = now + delay
        if t < conn.last_delivery:
            t = conn.last_delivery  # in order on the connection
        conn.last_delivery = t
        msg.t_delivered = t
        call_later(self.env, t - now, self._deliver, msg)

    def _deliver(self, event) -> None:
        msg = event._value
        if msg.cancelled:
            return
        msg.delivered = True
        self.events += 1
        if msg.on_delivered is not None:
            msg.on_delivered(msg)


_M64 = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64 (Steele, Lea & Flood, OOPSLA 2014): a 64-bit integer hash."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _M64
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _M64
    return x ^ (x >> 31)


def unit_hash(*keys: int) -> float:
    """A deterministic uniform number in (0, 1) from integer keys."""
    h = 0
    for k in keys:
        h = _mix(h ^ (k & _M64))
    return ((h >> 11) + 0.5) / 9007199254740992.0
