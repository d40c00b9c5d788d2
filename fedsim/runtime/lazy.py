"""Decoded updates, one tensor at a time.

A server holding K decoded fp32 updates needs K model-sized buffers at once; aggregation
only ever needs one tensor of each. `LazyTensors` keeps the (compact) encoded records and
decodes a tensor when it is read, so the peak is one tensor per client instead of one
model per client (10,000-client populations, PERFORMANCE.md `population_10k_rss`).
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping, Sequence

import numpy as np

from fedsim.codecs.pipeline import codec_for_record
from fedsim.codecs.wire import TensorRecord, WireError


class LazyTensors(MutableMapping):
    """{name: float32 array} over encoded records; values are decoded on every read
    (not cached). Assignments are kept as plain arrays and win over the records."""

    def __init__(self, records: Sequence[TensorRecord]):
        self._records: dict[str, TensorRecord] = {}
        for rec in records:
            if rec.name in self._records:
                raise WireError(f"duplicate tensor {rec.name!r}")
            codec_for_record(rec)  # the codec and its parameters must be valid now
            self._records[rec.name] = rec
        self._set: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self._set:
            return self._set[name]
        rec = self._records[name]
        return codec_for_record(rec).decode(rec)

    def __setitem__(self, name: str, value: np.ndarray) -> None:
        self._set[name] = value

    def __delitem__(self, name: str) -> None:
        found = self._set.pop(name, None) is not None
        found = self._records.pop(name, None) is not None or found
        if not found:
            raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        yield from self._records
        yield from (k for k in self._set if k not in self._records)

    def __len__(self) -> int:
        return len(self._records) + sum(1 for k in self._set if k not in self._records)

    def shape(self, name: str) -> tuple[int, ...]:
        """A tensor's shape without decoding it."""
        if name in self._set:
            return tuple(self._set[name].shape)
        return tuple(self._records[name].shape)
