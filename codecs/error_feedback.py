"""Error feedback (EF): a wrapper that makes any lossy codec remember what it failed to send.

For each tensor the sender keeps a residual e (zero at first) and, every time it sends x:

    acc   = x + e                 the value to send, with last time's error added back
    rec   = inner.encode(acc)     what goes on the wire
    e'    = acc - decode(rec)     the new residual: exactly what the wire did not carry

so sent + e' = x + e (to float32 rounding). Karimireddy et al. 2019 ("Error feedback
fixes SignSGD and other gradient compression schemes", Algorithm 2); Stich et al. 2018
for sparsification with memory. The residual lives in the state dict {"residual":
float32 array of x's shape}; encode never modifies the state it is given. The receiver
decodes the record with the inner codec alone: records carry the inner codec's spec.
"""

from __future__ import annotations

import numpy as np

from .base import Codec, as_float32
from .wire import TensorRecord


class ErrorFeedback(Codec):
    """ef(INNER)"""

    def __init__(self, inner: Codec):
        if inner.lossless:
            raise ValueError(f"error feedback needs a lossy codec; {inner.spec} is lossless")
        if isinstance(inner, ErrorFeedback):
            raise ValueError("error feedback cannot be nested")
        self.inner = inner
        self.spec = f"ef({inner.spec})"
        self.fixed_size = inner.fixed_size

    @property
    def wire_spec(self) -> str:
        return self.inner.wire_spec

    def encode(
        self,
        name: str,
        x: np.ndarray,
        rng: np.random.Generator,
        state: dict | None = None,
    ) -> tuple[TensorRecord, dict]:
        x = as_float32(x)
        residual = None if state is None else state.get("residual")
        if residual is None:
            acc = x.copy()
        else:
            residual = np.asarray(residual, dtype=np.float32)
            if residual.shape != x.shape:
                raise ValueError(
                    f"{name}: error-feedback residual has shape {residual.shape}, tensor {x.shape}"
                )
            acc = np.add(x, residual)
        rec = self.inner.encode_feedback(name, acc, rng)
        return rec, {"residual": acc}

    def decode(self, rec: TensorRecord) -> np.ndarray:
        return self.inner.decode(rec)

    def encode_parts(self, x, rng):
        """The inner codec's parts (no feedback: that needs the state, see encode)."""
        return self.inner.encode_parts(x, rng)

    def decode_parts(self, buffers, params, shape):
        return self.inner.decode_parts(buffers, params, shape)

    def encoded_nbytes(self, shape):
        return self.inner.encoded_nbytes(shape)
