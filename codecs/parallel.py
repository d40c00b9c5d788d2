"""Splitting a codec's chunk loop over threads (numpy releases the GIL inside its loops).

A tensor's values are cut into at most ``threads()`` contiguous parts, each a whole number
of ``CHUNK``-value chunks (so every part starts on a byte boundary of any packed stream,
and a stochastic codec's random words split exactly where its chunks do). Parts write
disjoint slices of the output, and every value is computed by the same operations as in
the one-thread loop, so the result is bit-identical for any thread count (a test holds
this; a stochastic codec gives each part a copy of its PCG64 generator jumped ahead to the
part's first value, or draws the parts' random numbers in order). Tensors under ``MIN_PARALLEL`` values run in the calling thread: the hand-off would
cost more than it saves.

The thread count is ``FEDSIM_CODEC_THREADS`` (default: the CPUs this process may use, at
most 4), or :func:`set_threads`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from .bitpack import CHUNK

__all__ = ["MIN_PARALLEL", "parts", "run_parts", "set_threads", "threads"]

MIN_PARALLEL = 4 * CHUNK  # values; below this a tensor is encoded in the calling thread


def _default() -> int:
    env = os.environ.get("FEDSIM_CODEC_THREADS")
    if env:
        return max(1, int(env))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


_threads = _default()
_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def threads() -> int:
    return _threads


def set_threads(n: int) -> int:
    """Use n threads (>= 1) from now on; returns the previous count."""
    global _threads, _pool
    if n < 1:
        raise ValueError(f"codec threads must be >= 1, got {n}")
    with _lock:
        old, _threads = _threads, int(n)
        if _pool is not None and old != n:
            _pool.shutdown(wait=True)
            _pool = None
    return old


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_threads, thread_name_prefix="fedsim-codec")
        return _pool


def parts(n: int, chunks_per_part: int | None = None) -> list[tuple[int, int]]:
    """[(start, end), ...]: contiguous parts of range(n), whole chunks each (the last may end
    short): one per thread, or of `chunks_per_part` chunks; a single part for small n or
    one thread."""
    t = _threads
    if t <= 1 or n < MIN_PARALLEL:
        return [(0, n)]
    chunks = -(-n // CHUNK)
    per = chunks_per_part or -(-chunks // t)
    return [(a, min(a + per * CHUNK, n)) for a in range(0, n, per * CHUNK)]


def run_parts(
    spans: list[tuple[int, int]],
    work: Callable[[int, int], None],
    before: Callable[[int, int], object] | None = None,
) -> None:
    """work(a, b) for every span.

    Without `before`: the last span in this thread, the others on the pool. With it:
    ``before(a, b)`` runs in this thread, in span order, and its result is passed as
    ``work(a, b, prepared)`` on the pool, while this thread goes on to the next span's
    `before`: how a stochastic codec draws each part's random numbers from one generator
    in order while the parts drawn already are being computed.
    """
    if len(spans) == 1:
        a, b = spans[0]
        work(a, b) if before is None else work(a, b, before(a, b))  # type: ignore[call-arg]
        return
    pool = _executor()
    futures: list[Future] = []
    try:
        for i, (a, b) in enumerate(spans):
            if before is not None:
                futures.append(pool.submit(work, a, b, before(a, b)))
            elif i < len(spans) - 1:
                futures.append(pool.submit(work, a, b))
            else:
                work(a, b)
    finally:
        for f in futures:
            f.result()  # waits for every part; re-raises a part's exception here
