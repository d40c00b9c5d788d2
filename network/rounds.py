"""The round-level simulator the runtime calls: sync rounds and an async (FedBuff) session.

The runtime first collects the real results (so every byte count is known), then asks
:class:`NetworkModel` for the round's timeline. Each client's trip is: download the model
(sharing the server's outgoing link), compute for ``compute_s`` (FLOPs / device FLOP/s),
upload the update (sharing the server's incoming link). A device that goes offline before
its update has left it drops out, and its flows free their share at once. Simulated time
comes from simpy and the byte counts only, never from the wall clock; everything is
deterministic for a seed.
"""

from __future__ import annotations

import abc
import gc
import math
import struct
from collections import deque
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import simpy

from .availability import AlwaysOn, Availability
from .devices import DeviceProfile
from .links import (
    DEFAULT_BANDWIDTH_FACTOR,
    DEFAULT_LATENCY_FACTOR,
    DEFAULT_MESSAGE_OVERHEAD_S,
    DEFAULT_MSS,
    DOWN,
    UP,
    DevicePaths,
    Message,
    StarNetwork,
    call_later,
)
from .selection import candidates, sample_online

__all__ = [
    "ClientJob",
    "ClientTimeline",
    "NetworkModel",
    "AsyncSession",
    "REASONS",
]

#: Why a client's update was not accepted.
REASONS = ("offline", "straggler", "deadline")

_INF = math.inf


@dataclass(frozen=True)
class ClientJob:
    """One selected client's round: real byte counts and its FLOP-based compute time."""

    client_id: int
    down_bytes: int
    compute_s: float
    up_bytes: int


@dataclass(frozen=True)
class ClientTimeline:
    """What happened to one client, in simulated seconds; ``inf`` for phases never reached.

    ``t_down_end`` and ``t_up_end`` are deliveries (last byte at the receiver). ``reason``
    is ``None`` for an accepted update, else one of :data:`REASONS`; ``t_dropped`` is when
    the client was dropped (``inf`` if it was not).
    """

    client_id: int
    t_dispatch: float
    t_down_start: float
    t_down_end: float
    t_compute_end: float
    t_up_start: float
    t_up_end: float
    accepted: bool
    dropped: bool
    reason: str | None
    t_dropped: float = _INF


class _Trip:
    """Mutable state of one client's trip while it is simulated."""

    __slots__ = (
        "cid",
        "down_bytes",
        "compute_s",
        "up_bytes",
        "t_dispatch",
        "t_down_start",
        "t_down_end",
        "t_compute_end",
        "t_up_start",
        "t_up_end",
        "t_dropped",
        "msg",
        "done",
        "blocked",
        "reason",
    )

    def __init__(self, cid: int, t: float, down_bytes: int, compute_s: float, up_bytes):
        if down_bytes < 0 or (up_bytes is not None and up_bytes < 0):
            raise ValueError(f"client {cid}: byte counts must be >= 0")
        if not (compute_s >= 0 and math.isfinite(compute_s)):
            raise ValueError(f"client {cid}: compute_s must be >= 0 and finite, got {compute_s}")
        self.cid = cid
        self.down_bytes = down_bytes
        self.compute_s = compute_s
        self.up_bytes = up_bytes
        self.t_dispatch = t
        self.t_down_start = _INF
        self.t_down_end = _INF
        self.t_compute_end = _INF
        self.t_up_start = _INF
        self.t_up_end = _INF
        self.t_dropped = _INF
        self.msg: Message | None = None
        self.done = False
        self.blocked = False
        self.reason: str | None = None

    def timeline(self) -> ClientTimeline:
        accepted = self.done and self.reason is None
        return ClientTimeline(
            self.cid,
            self.t_dispatch,
            self.t_down_start,
            self.t_down_end,
            self.t_compute_end,
            self.t_up_start,
            self.t_up_end if accepted else _INF,
            accepted,
            self.reason is not None,
            self.reason,
            self.t_dropped,
        )


class _Trips(abc.ABC):
    """Runs trips on one simpy environment; subclasses decide what arrivals and drops mean."""

    def __init__(self, model: NetworkModel, env: simpy.Environment, stream: int, spare=None):
        self.model = model
        self.env = env
        self.net = StarNetwork(
            env,
            model.paths,
            model.server_up_bps,
            model.server_down_bps,
            seed=model.seed,
            stream=stream,
            spare=spare,
        )
        self.events = 0  # compute completions and drops; the links count their own
        avail = model.availability
        self._avail = None if type(avail) is AlwaysOn else avail

    def _begin(self, trip: _Trip) -> None:
        now = self.env._now  # (simpy's clock without the property call)
        avail = self._avail
        if avail is not None:
            if not avail.is_online(trip.cid, now):
                self._drop(trip, "offline")
                return
            t_off = avail.next_offline(trip.cid, now)
            if t_off < _INF:
                call_later(self.env, t_off - now, self._offline, trip)
        trip.t_down_start = now
        trip.msg = self.net.send(trip.cid, DOWN, trip.down_bytes, self._downloaded, trip)

    def _downloaded(self, msg: Message) -> None:
        trip = msg.tag
        trip.t_down_end = self.env._now
        call_later(self.env, trip.compute_s, self._computed, trip)

    def _computed(self, event) -> None:
        trip = event._value
        if trip.done:
            return
        self.events += 1
        trip.t_compute_end = self.env._now
        if trip.up_bytes is None:
            trip.blocked = True
            self._blocked(trip)
        else:
            self._upload(trip)

    def _upload(self, trip: _Trip) -> None:
        trip.t_up_start = self.env._now
        trip.msg = self.net.send(trip.cid, UP, trip.up_bytes, self._uploaded, trip)

    def _uploaded(self, msg: Message) -> None:
        trip = msg.tag
        if trip.done:
            return
        trip.t_up_end = self.env._now
        trip.done = True
        self._arrived(trip)

    def _offline(self, event) -> None:
        trip = event._value
        if trip.done:
            return
        msg = trip.msg
        if msg is not None and msg.direction == UP and msg.t_transmitted is not None:
            return  # the update has left the device; it is on its way
        self._drop(trip, "offline")

    def _drop(self, trip: _Trip, reason: str) -> None:
        trip.done = True
        trip.reason = reason
        trip.t_dropped = self.env.now
        if trip.msg is not None:
            self.net.cancel(trip.msg)
        self.events += 1
        self._dropped(trip)

    # hooks: what a synchronous round and an asynchronous session do with a trip's end
    @abc.abstractmethod
    def _arrived(self, trip: _Trip) -> None: ...

    @abc.abstractmethod
    def _dropped(self, trip: _Trip) -> None: ...

    @abc.abstractmethod
    def _blocked(self, trip: _Trip) -> None: ...


class _SyncRound(_Trips):
    def __init__(self, model, t0, jobs, accept_first, deadline_s):
        env = simpy.Environment(initial_time=t0)
        super().__init__(model, env, stream=_float_key(t0), spare=model._spare_conns)
        self.t0 = t0
        self.trips = [
            _Trip(j.client_id, t0, j.down_bytes, j.compute_s, j.up_bytes)
            for j in sorted(jobs, key=lambda j: j.client_id)
        ]
        ids = [t.cid for t in self.trips]
        if len(set(ids)) != len(ids):
            raise ValueError("a client appears twice in one round")
        n = len(model.devices)
        for cid in ids:
            if not 0 <= cid < n:
                raise ValueError(f"no device for client {cid} (population of {n})")
        if accept_first is not None and accept_first < 1:
            raise ValueError(f"accept_first must be >= 1, got {accept_first}")
        if deadline_s is not None and not deadline_s >= 0:
            raise ValueError(f"deadline_s must be >= 0, got {deadline_s}")
        self.accept_first = accept_first
        self.deadline_s = deadline_s
        self.unresolved = len(self.trips)
        self.n_accepted = 0
        self.t_last = None
        self.t_quorum = None
        self.finished = env.event()

    def run(self) -> tuple[float, list[ClientTimeline]]:
        env = self.env
        try:
            for trip in self.trips:
                self._begin(trip)
            if self.deadline_s is not None:
                call_later(env, self.deadline_s, self._deadline)
            if not self.unresolved:
                self._finish()
            env.run(until=self.finished)
        finally:
            self._close()
        if self.t_quorum is not None:
            end = self.t_quorum
        elif any(t.reason == "deadline" for t in self.trips):
            end = self.t0 + self.deadline_s
        else:
            end = self.t_last if self.t_last is not None else self.t0
        return end, [t.timeline() for t in self.trips]

    def _close(self) -> None:
        """Break the round's reference cycles so that it is freed without the cyclic GC."""
        for trip in self.trips:
            trip.msg = None
        self.net.close()
        self.env._queue.clear()  # events left (stale timers) hold callbacks into the round

    def _finish(self) -> None:
        if not self.finished.triggered:
            self.finished.succeed()

    def _arrived(self, trip: _Trip) -> None:
        self.unresolved -= 1
        self.n_accepted += 1
        self.t_last = self.env.now
        if self.n_accepted == self.accept_first:
            self.t_quorum = self.env.now
            for other in self.trips:
                if not other.done:
                    self._drop(other, "straggler")
        if not self.unresolved:
            self._finish()

    def _dropped(self, trip: _Trip) -> None:
        self.unresolved -= 1
        if not self.unresolved:
            self._finish()

    def _blocked(self, trip: _Trip) -> None:  # pragma: no cover - sync jobs know their bytes
        raise AssertionError("sync round without up_bytes")

    def _deadline(self, _event) -> None:
        # Updates arriving exactly at the deadline count: let every other event at this
        # instant (including those it schedules with zero delay) go first.
        if self.env.peek() <= self.env.now:
            later = self.env.event()
            later.callbacks.append(self._deadline)
            later.succeed()
            return
        for trip in self.trips:
            if not trip.done:
                self._drop(trip, "deadline")
        self._finish()


class AsyncSession(_Trips):
    """Asynchronous buffered aggregation (FedBuff-style), simulated conservatively.

    Protocol for the coordinator:

    1. ``dispatch(cid, t, down_bytes, compute_s)`` when it sends a client the model at
       simulated time ``t`` (``t >= now``); returns a lower bound on the arrival time.
    2. ``complete(cid, up_bytes)`` as soon as the client's real update is encoded.
    3. ``next_arrival()`` returns the next event in simulated-time order, a
       :class:`ClientTimeline` (an accepted arrival, or a drop with reason ``"offline"``),
       only once no outstanding client could produce an earlier one. It returns ``None``
       when nothing is in flight, or when time cannot advance until ``complete`` is called
       for the clients in :meth:`waiting_for` (their uploads are about to start). A
       ``None`` carries no simulated information: answer it with ``complete`` only.
    4. Dispatch replacements at the time of the event just returned, before asking again.

    The outcome does not depend on when ``complete`` is called, only on the sequence of
    dispatches and byte counts.
    """

    def __init__(self, model: NetworkModel, t0: float = 0.0):
        env = simpy.Environment(initial_time=t0)
        super().__init__(model, env, stream=_float_key(t0) ^ 0x5A5A5A5A5A5A5A5A)
        self._trips: dict[int, _Trip] = {}
        self._ready: deque[_Trip] = deque()
        self._waiting: dict[int, _Trip] = {}

    @property
    def now(self) -> float:
        """How far simulated time has advanced (only ever forward)."""
        return self.env.now

    def outstanding(self) -> list[int]:
        return sorted(self._trips)

    def waiting_for(self) -> list[int]:
        """Clients whose ``up_bytes`` are needed before simulated time can advance."""
        return sorted(self._waiting)

    def dispatch(self, client_id: int, t: float, down_bytes: int, compute_s: float) -> float:
        if client_id in self._trips:
            raise ValueError(f"client {client_id} is already in flight")
        if not 0 <= client_id < len(self.model.devices):
            raise ValueError(f"no device for client {client_id}")
        if t < self.env.now:
            raise ValueError(f"cannot dispatch at t={t}: simulated time is already {self.env.now}")
        trip = _Trip(client_id, t, down_bytes, compute_s, None)
        self._trips[client_id] = trip
        if t > self.env.now:
            call_later(self.env, t - self.env._now, self._start, trip)
        else:
            self._begin(trip)
        return self.earliest_arrival(client_id)

    def complete(self, client_id: int, up_bytes: int) -> None:
        """The real update of an outstanding client is ``up_bytes`` long."""
        trip = self._trips.get(client_id)
        if trip is None:
            return  # dropped (offline) or cancelled meanwhile: nothing to send
        if trip.up_bytes is not None:
            raise ValueError(f"client {client_id}: complete() called twice")
        if up_bytes < 0:
            raise ValueError(f"client {client_id}: up_bytes must be >= 0")
        trip.up_bytes = up_bytes
        if trip.blocked:
            trip.blocked = False
            del self._waiting[client_id]
            self._upload(trip)

    def cancel(self, client_id: int) -> None:
        """Forget an outstanding client (e.g. too stale); no event is emitted for it."""
        trip = self._trips.pop(client_id, None)
        if trip is None:
            return
        trip.done = True
        trip.reason = "cancelled"
        self._waiting.pop(client_id, None)
        if trip.msg is not None:
            self.net.cancel(trip.msg)

    def earliest_arrival(self, client_id: int) -> float:
        """A lower bound on the client's arrival: its remaining phases alone on the network."""
        trip = self._trips[client_id]
        paths = self.model.paths
        lat = paths.delay[client_id]  # one-way latency + per-message overhead
        if trip.t_compute_end < _INF:
            return max(self.env.now, trip.t_compute_end) + lat
        if trip.t_down_end < _INF:
            return trip.t_down_end + trip.compute_s + lat
        rate = min(paths.caps[DOWN][client_id], self.net.links[DOWN].capacity)
        return trip.t_dispatch + lat + trip.down_bytes / rate + trip.compute_s + lat

    def next_arrival(self) -> ClientTimeline | None:
        env = self.env
        while True:
            if self._ready:
                return self._ready.popleft().timeline()
            if self._waiting or not self._trips:
                return None
            if env.peek() == _INF:  # pragma: no cover - a trip in flight always has an event
                raise RuntimeError(f"clients {self.outstanding()} in flight but nothing scheduled")
            env.step()

    def _start(self, event) -> None:
        trip = event._value
        if not trip.done:
            self._begin(trip)

    def _arrived(self, trip: _Trip) -> None:
        del self._trips[trip.cid]
        self._ready.append(trip)

    def _dropped(self, trip: _Trip) -> None:
        self._trips.pop(trip.cid, None)
        self._waiting.pop(trip.cid, None)
        self._ready.append(trip)

    def _blocked(self, trip: _Trip) -> None:
        self._waiting[trip.cid] = trip


class NetworkModel:
    """The simulated network of one population: devices, server links, availability.

    ``server_up_bps`` is the server's incoming capacity (the clients' upload direction),
    ``server_down_bps`` its outgoing one; both in bit/s, ``inf`` for "never the bottleneck".
    Every message, download or upload, is delivered its device's one-way latency plus
    ``message_overhead_s`` after its last byte has crossed the links (see
    :class:`~fedsim.network.links.StarNetwork`).
    Stateless between calls: a round's result depends only on its arguments and the seed.
    """

    def __init__(
        self,
        devices: Sequence[DeviceProfile],
        server_up_bps: float,
        server_down_bps: float,
        availability: Availability | None = None,
        *,
        seed: int,
        bandwidth_factor: float = DEFAULT_BANDWIDTH_FACTOR,
        latency_factor: float = DEFAULT_LATENCY_FACTOR,
        mss: int = DEFAULT_MSS,
        message_overhead_s: float = DEFAULT_MESSAGE_OVERHEAD_S,
    ):
        for name, v in (("server_up_bps", server_up_bps), ("server_down_bps", server_down_bps)):
            if not v > 0:
                raise ValueError(f"{name} must be > 0 bit/s, got {v}")
        self.devices = tuple(devices)
        self.server_up_bps = float(server_up_bps)
        self.server_down_bps = float(server_down_bps)
        self.availability = availability if availability is not None else AlwaysOn()
        self.seed = int(seed)
        self.paths = DevicePaths(
            self.devices,
            bandwidth_factor=bandwidth_factor,
            latency_factor=latency_factor,
            mss=mss,
            message_overhead_s=message_overhead_s,
        )
        self.events = 0  # model events simulated so far (sends, transmissions, deliveries, ...)
        self._spare_conns: list = []  # connection objects reused by successive sync rounds
        self._pool: Sequence[int] | None = None  # devices that can be online (selection)

    def online_clients(self, t: float) -> list[int]:
        """Every device online at ``t`` (asks the whole population; see ``sample_online``)."""
        avail = self.availability
        return [i for i in range(len(self.devices)) if avail.is_online(i, t)]

    def sample_online(self, t: float, m: int, rng, exclude: Collection[int] = ()) -> list[int]:
        """Up to ``m`` devices online at ``t`` and not in ``exclude``, uniformly at random,
        sorted; work proportional to ``m`` (network/selection.py), not to the population."""
        if self._pool is None:
            self._pool = candidates(self.availability, len(self.devices))
        return sample_online(
            self.availability, len(self.devices), t, m, rng, exclude, pool=self._pool
        )

    def compute_seconds(self, client_id: int, flops: float) -> float:
        """FLOPs / the client's effective FLOP/s."""
        if flops < 0:
            raise ValueError(f"FLOP count must be >= 0, got {flops}")
        return flops / self.devices[client_id].flops

    def run_sync_round(
        self,
        t0: float,
        jobs: Sequence[ClientJob],
        *,
        accept_first: int | None = None,
        deadline_s: float | None = None,
    ) -> tuple[float, list[ClientTimeline]]:
        """Simulate one synchronous round starting at ``t0``; timelines sorted by client id.

        All downloads start at ``t0``. With ``accept_first=K`` the first K updates to arrive
        are accepted and the rest are stragglers, cut when the K-th arrives (the round ends
        then). Updates not arrived by ``t0 + deadline_s`` are dropped ("deadline") and the
        round ends at the deadline, since the server had to wait for it. Otherwise the round
        ends when the last accepted update arrives (``t0`` if none). A client whose device
        is offline at ``t0`` or goes offline before its update has left is dropped
        ("offline").
        """
        with _gc_paused():
            rnd = _SyncRound(self, float(t0), jobs, accept_first, deadline_s)
            result = rnd.run()
            self.events += rnd.events + rnd.net.events
        return result

    def async_session(self, t0: float = 0.0) -> AsyncSession:
        """Start an asynchronous (FedBuff-style) session at ``t0``; see :class:`AsyncSession`."""
        return AsyncSession(self, float(t0))


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Keep the cyclic GC from scanning a round's objects every 700 allocations.

    A round allocates tens of thousands of short-lived objects (simpy events, messages);
    letting the collector trigger on them repeatedly costs 20-40 %. The round breaks its
    own reference cycles when it ends (``_SyncRound._close``), so its objects are freed by
    reference counting and no collection work is deferred to later.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _float_key(t: float) -> int:
    """An integer key with the exact bits of a float (so equal times give equal streams)."""
    return struct.unpack("<q", struct.pack("<d", t))[0]
