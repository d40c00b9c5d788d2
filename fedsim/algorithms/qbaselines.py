"""Quantized-update baselines with paper-style bit accounting.

`fedpaq` is FedAvg whose uplink is whatever `[codec].uplink` names — `q2`/`q4`/`q8`
(fixed-bit uniform quantization of Δ = w_local − w_global, FedPAQ style: Reisizadeh et al.,
AISTATS 2020), `qsgd:s=16` (QSGD, Alistarh et al. 2017), `ef(sign)` (signSGD with error
feedback, Karimireddy et al. 2019) — and which reports, besides the exact wire bytes the
runtime measures, the papers' accounting: sum(bits_per_value · values) + 32 per scale.

Client metrics (in the update header): `bits_mean` (value-weighted bits per value) and
`paper_bits`. Round metrics (metrics.jsonl): `bits_mean` (mean over accepted clients) and
`paper_bits_up` (sum over accepted clients). FedDQ and AdaQuantFL build on this class.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fedsim.algorithms.base import (
    ClientContext,
    ClientResult,
    ClientUpdate,
    Encoded,
    State,
    Uplink,
)
from fedsim.algorithms.fedavg import FedAvg
from fedsim.codecs.base import Codec
from fedsim.codecs.error_feedback import ErrorFeedback
from fedsim.codecs.pipeline import encode_tensors, parse_codec
from fedsim.codecs.qsgd import QSGDCodec
from fedsim.codecs.quantize import QuantizeCodec, SignCodec


def bits_per_value(codec: Codec) -> float:
    """Bits each value costs in the papers' accounting (32 for fp32)."""
    if isinstance(codec, ErrorFeedback):
        return bits_per_value(codec.inner)
    if isinstance(codec, QuantizeCodec | QSGDCodec):
        return float(codec.bits)
    if isinstance(codec, SignCodec):
        return 1.0
    if codec.spec in ("fp16", "bf16"):
        return 16.0
    return 32.0


def scales_per_tensor(codec: Codec, shape: tuple[int, ...]) -> int:
    """How many fp32 scalars (scales, offsets, norms) accompany one tensor."""
    if isinstance(codec, ErrorFeedback):
        return scales_per_tensor(codec.inner, shape)
    if isinstance(codec, QuantizeCodec):
        return 2 * codec.layout(shape)[0]  # lo and step per group
    if isinstance(codec, QSGDCodec | SignCodec):
        return codec.layout(shape)[0]  # norm / mean|x| per group
    return 0


def paper_bits(codec: Codec | str, shape: tuple[int, ...]) -> float:
    """sum(bits_per_value · values) + 32 per scale for one tensor (dense codecs only)."""
    codec = parse_codec(codec) if isinstance(codec, str) else codec
    return bits_per_value(codec) * math.prod(shape) + 32 * scales_per_tensor(codec, shape)


class FedPAQ(FedAvg):
    name = "fedpaq"
    summary = (
        "FedAvg with the [codec].uplink quantizer on updates (FedPAQ/QSGD/signSGD+EF "
        "baselines), reporting paper-style bits"
    )

    def tensor_spec(self, ctx: ClientContext, name: str, x: np.ndarray, spec: str) -> str:
        """The codec spec for one tensor of the update (FedDQ picks bits per tensor here)."""
        return spec

    def encode_update(self, ctx: ClientContext, update: ClientUpdate, up: Uplink) -> Encoded:
        chosen: dict[str, Codec] = {}

        def codec_for(name: str, x: np.ndarray) -> Codec:
            chosen[name] = parse_codec(self.tensor_spec(ctx, name, x, up.spec))
            return chosen[name]

        records, new_state = encode_tensors(update.tensors, codec_for, up.rng, up.state or None)
        t = update.tensors
        bits = sum(paper_bits(c, t[k].shape) for k, c in chosen.items())
        values = sum(t[k].size * bits_per_value(c) for k, c in chosen.items())
        n = sum(x.size for x in t.values())
        return Encoded(records, new_state, {"paper_bits": bits, "bits_mean": values / max(n, 1)})

    def after_aggregate(
        self, rnd: int, global_state: State, results: list[ClientResult]
    ) -> dict[str, Any]:
        if not results:
            return {"paper_bits_up": 0.0}
        return {
            "bits_mean": float(np.mean([r.metrics.get("bits_mean", 32.0) for r in results])),
            "paper_bits_up": float(sum(r.metrics.get("paper_bits", 0.0) for r in results)),
        }
