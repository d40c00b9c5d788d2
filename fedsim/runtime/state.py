"""Per-client state store (error-feedback residuals, per-client algorithm tensors).

The coordinator owns it; state travels with each task and comes back with the result; a
client's new state is committed only when the coordinator accepts its result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fedsim.runtime.protocol import unpack_state


class ClientStateStore:
    def __init__(self) -> None:
        self._state: dict[int, dict[str, np.ndarray]] = {}

    def get(self, client: int) -> dict[str, np.ndarray]:
        return self._state.get(client, {})

    def commit(self, client: int, frames: Sequence[Any]) -> None:
        if frames:
            self._state[client] = unpack_state(frames)

    def clients(self) -> list[int]:
        return sorted(self._state)
