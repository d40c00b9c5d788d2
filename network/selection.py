"""Drawing clients online at a simulated time, with work proportional to the draw, not the
population.

A round of 1,000 clients out of 100,000 must not ask every device whether it is online:
:func:`sample_online` asks only the devices it draws. When every device is online
(:class:`~.availability.AlwaysOn`) the eligible clients are known by count, and the draw is
``rng.choice(count, m, replace=False)`` over their ranks, which numpy does in O(m) for
``m <= count / 50`` (Floyd's algorithm) and gives the same clients as choosing from the
list of all eligible ids. Otherwise the draw walks a lazily generated uniform random
permutation of the candidates (Fisher-Yates with a sparse swap table, Knuth TAOCP vol. 2,
Algorithm 3.4.2P) and keeps the first ``m`` online, not-excluded devices: a uniform
``m``-subset of the eligible ones, after about ``m / p`` availability queries where ``p``
is the fraction online (all candidates only when fewer than ``m`` are eligible).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from .availability import AlwaysOn, Availability, TraceAvailability

__all__ = ["candidates", "sample_online"]

_CHUNK = 256  # uniforms drawn per refill while walking the permutation


def candidates(availability: Availability, population: int) -> Sequence[int]:
    """The devices that can ever be online: a trace whose missing devices are offline
    names them; otherwise the whole population (a ``range``, never a list)."""
    if isinstance(availability, TraceAvailability) and availability.missing == "offline":
        return [d for d in availability.devices if 0 <= d < population]
    return range(population)


def _rank_to_id(rank: int, excluded: Sequence[int]) -> int:
    """The ``rank``-th (from 0) integer >= 0 that is not in the sorted ``excluded``."""
    c = rank
    for e in excluded:
        if e <= c:
            c += 1
        else:
            break
    return c


def sample_online(
    availability: Availability,
    population: int,
    t: float,
    m: int,
    rng: np.random.Generator,
    exclude: Collection[int] = (),
    pool: Sequence[int] | None = None,
) -> list[int]:
    """Up to ``m`` distinct devices of ``0..population-1`` (or of ``pool``), online at ``t``
    and not in ``exclude``, uniformly at random; sorted by id."""
    if m <= 0 or population <= 0:
        return []
    if type(availability) is AlwaysOn and (pool is None or pool == range(population)):
        excluded = sorted(c for c in set(exclude) if 0 <= c < population)
        eligible = population - len(excluded)
        m = min(m, eligible)
        if m <= 0:
            return []
        ranks = rng.choice(eligible, size=m, replace=False)
        return sorted(_rank_to_id(int(r), excluded) for r in ranks)
    pool = candidates(availability, population) if pool is None else pool
    n = len(pool)
    swaps: dict[int, int] = {}  # position -> index of pool now there (absent: itself)
    chosen: list[int] = []
    uniforms: list[float] = []
    for i in range(n):
        if not uniforms:
            uniforms = rng.random(_CHUNK).tolist()[::-1]
        j = min(i + int(uniforms.pop() * (n - i)), n - 1)  # uniform position in [i, n)
        pick = swaps.get(j, j)
        swaps[j] = swaps.get(i, i)
        device = int(pool[pick])
        if device not in exclude and availability.is_online(device, t):
            chosen.append(device)
            if len(chosen) == m:
                break
    return sorted(chosen)
