"""Per-purpose seeds derived from (seed, round, client, purpose) with numpy's SeedSequence.

Nothing in a run draws from a global RNG: every random choice names what it is for, so the
result does not depend on which process or in which order work is done.
"""

from __future__ import annotations

import numpy as np

SELECT = 1
TRAIN = 2
UPLINK = 3
DOWNLINK = 4
INIT = 5
NETWORK = 6
PARTITION = 7
ALGORITHM = 8  # server-side draws of a method (ServerContext.rng)
DOWNLINK_CLIENT = 9  # per-client downlink encoding (error feedback on the model)


def derive_seed(seed: int, purpose: int, rnd: int = 0, client: int = 0) -> int:
    """A 63-bit seed unique to (seed, purpose, round, client)."""
    ss = np.random.SeedSequence([seed, purpose, rnd, client])
    return int(
        ss.generate_state(2, dtype=np.uint32).astype(np.uint64)
        @ np.array([1 << 31, 1], dtype=np.uint64)
    ) & ((1 << 63) - 1)


def rng_for(seed: int, purpose: int, rnd: int = 0, client: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, purpose, rnd, client]))
