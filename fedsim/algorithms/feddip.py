"""FedDIP (Long et al., ICDM 2023): dynamic pruning with error feedback + incremental
regularization, with sparse payloads both ways (../shared/PAPERS.md §5).

Pieces, all as in the paper's code (EricLoong/feddip) unless marked:

- target sparsity s_t = s_p + (s_0 − s_p)(1 − t/R)^3 for t < R, s_p from round R on
  (`sparsity_at`); R = `ramp_end`, by default T (the code's ramp over the whole run);
  PAPERS.md §5 (revised) runs R = T/2, which is where the mean density of the schedule
  drops low enough for the ≤ 15% total-bytes target;
- round 1: each client draws its own random ERK mask at density 1 − s_0 (`erk_densities`,
  norm layers, biases and shortcut convs dense);
- local step: forward with w ⊙ m, loss = CE + λ_t Σ_l ||(w ⊙ m)_l||_2, the gradient taken at
  the masked weights applied to the dense w (DPF: Lin et al. 2020); lr = lr_0 · 0.998^t;
- λ_t: a 20-step staircase over T, 0 on the first step, then 5e-4 rising linearly to
  λ_max = 1e-3 on the last (`staircase_lambda`);
- server: sample-weighted average, then a global magnitude mask at s_t over the prunable
  weights (conv/linear weights).

Modes:

- ``faithful``: the code's behaviour. The server re-prunes every `prune_every` rounds
  (and on round 1 and every round from R on) with the old mask applied first, so masks only
  shrink (nested); from round 2 clients upload w ⊙ m with m the global mask — sparse on the
  wire where the paper's code uploads the dense w, the same average since the server
  applies m next. Round 1 uploads the dense local weights: the code averages those
  (fl_server.py: `average_weights` over `state_dict()`s, then the first global prune);
  each client's own ERK-masked weights averaged with zeros elsewhere would shrink every
  weight by the share of clients whose mask held it.
- ``regrow`` (default): the paper's intent — pruned weights can return, and what a client
  does not send is kept as an error-feedback residual. The client's accumulated change is
  a = (w_local − w_global) + r; it sends the top-(1 − s_t) of its intended weights
  w_global + a (global magnitude over the prunable layers) and keeps r' = a at the unsent
  positions. The server reads an unsent position as "no change" (the global value it
  already has), averages, and re-prunes every round from that dense estimate without the
  old mask. (Read literally — residual kept on the weights, unsent positions averaged as
  zero — the scheme counts an unsent weight twice and shrinks weights others did not pick;
  see docs/results/sparsity.md. Option `literal = true` runs that reading.)

Wire. Uplink records are built here, one per tensor: prunable tensors as
``topk:<count>`` with the exact number of kept values and the `mask` encoding (default
``auto``: the smallest of index/bitmap/golomb for that very support), other tensors fp32.
Downlink: the pruned model as the same exact per-tensor records (`encode_payload`);
`down_bytes_runtime` reports what one shared ``topk:<K>`` spec would have cost.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from fedsim.algorithms.base import (
    Algorithm,
    ClientContext,
    ClientResult,
    ClientUpdate,
    Encoded,
    Options,
    RoundPlan,
    State,
    Uplink,
    state_from_model,
    weighted_mean,
)
from fedsim.codecs.error_feedback import ErrorFeedback
from fedsim.codecs.floats import Float32Codec
from fedsim.codecs.pipeline import encode_tensors, parse_codec
from fedsim.codecs.sparsify import SparseCodec
from fedsim.codecs.wire import pack_message, wire_bytes

PAPER_BITS_PER_VALUE = 32
_SHORTCUT = ("shortcut", "downsample")


# ---- pure pieces (unit-tested) ---------------------------------------------------------
def sparsity_at(t: float, ramp: float, s0: float, sp: float) -> float:
    """Cubic schedule s_t = s_p + (s_0 − s_p)(1 − t/R)^3, t clipped to [0, R]: the ramp
    reaches s_p at t = R and stays there (Zhu & Gupta 2017's gradual pruning, as FedDIP's
    code uses it with R = T)."""
    frac = min(max(t / ramp, 0.0), 1.0) if ramp > 0 else 1.0
    return sp + (s0 - sp) * (1.0 - frac) ** 3


def staircase_lambda(
    t: float, total: float, steps: int = 20, lam_min: float = 5e-4, lam_max: float = 1e-3
) -> float:
    """λ_t: `steps` equal stairs over T; 0 on the first, then lam_min rising linearly to
    lam_max on the last."""
    j = min(int(steps * t / total), steps - 1) if total > 0 else steps - 1
    if j <= 0:
        return 0.0
    if steps <= 2:
        return lam_max
    return lam_min + (lam_max - lam_min) * (j - 1) / (steps - 2)


def is_prunable(name: str, shape: tuple[int, ...]) -> bool:
    """Conv and linear weights; biases, norm layers and shortcut convs stay dense."""
    return name.endswith("weight") and len(shape) >= 2 and not any(s in name for s in _SHORTCUT)


def erk_densities(shapes: dict[str, tuple[int, ...]], density: float) -> dict[str, float]:
    """Erdős–Rényi-Kernel densities (Evci et al. 2020): d_l = ε·sum(shape)/prod(shape),
    ε chosen so Σ d_l n_l = density · Σ n_l; layers that would exceed 1 are made dense and
    ε is solved again over the rest."""
    n = {k: int(np.prod(s)) for k, s in shapes.items()}
    score = {k: sum(s) / n[k] for k, s in shapes.items()}
    budget = density * sum(n.values())
    dense: set[str] = set()
    while True:
        rest = [k for k in shapes if k not in dense]
        remaining = budget - sum(n[k] for k in dense)
        denom = sum(score[k] * n[k] for k in rest)
        eps = remaining / denom if denom > 0 else 0.0
        over = [k for k in rest if eps * score[k] > 1.0]
        if not over:
            break
        dense.update(over)
    return {k: 1.0 if k in dense else max(0.0, eps * score[k]) for k in shapes}


def random_mask(shape: tuple[int, ...], density: float, rng: np.random.Generator) -> np.ndarray:
    n = int(np.prod(shape))
    keep = min(n, max(1, round(density * n)))
    m = np.zeros(n, bool)
    m[rng.choice(n, size=keep, replace=False)] = True
    return m.reshape(shape)


def global_magnitude_mask(
    tensors: dict[str, np.ndarray], sparsity: float, allowed: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Keep the round((1 − s)·N) largest |w| over all tensors (N = total size), only among
    `allowed` positions when given (then fewer if fewer are allowed)."""
    names = sorted(tensors)
    flat = np.concatenate([np.abs(tensors[k]).reshape(-1) for k in names]).astype(np.float32)
    if allowed is not None:
        ok = np.concatenate([allowed[k].reshape(-1) for k in names])
        flat = np.where(ok, flat, -1.0)
    n = flat.size
    keep = min(n, max(1, round((1.0 - sparsity) * n)))
    if allowed is not None:
        keep = min(keep, int(ok.sum()))
    idx = np.argpartition(flat, n - keep)[n - keep :] if keep < n else np.arange(n)
    sel = np.zeros(n, bool)
    sel[idx] = True
    out, pos = {}, 0
    for k in names:
        size = tensors[k].size
        out[k] = sel[pos : pos + size].reshape(tensors[k].shape)
        pos += size
    return out


def sparse_records(
    tensors: State,
    masks: dict[str, np.ndarray],
    mask_kind: str,
    rng: np.random.Generator,
    codec_state: dict | None = None,
    feedback: bool = False,
) -> tuple[list, dict, dict[str, Any]]:
    """One record per tensor: masked tensors as topk:<kept count> (exactly the mask's
    positions when the values there are the largest), others fp32. With `feedback`, the
    masked tensors go through ef(...): the unsent part stays in the returned state.
    Returns (records, new codec state, stats: values sent and mask kind per tensor)."""
    records, new_state = [], {}
    stats: dict[str, Any] = {"values": 0, "kinds": {}}
    for name in sorted(tensors):
        x = np.ascontiguousarray(tensors[name], dtype=np.float32)
        if name in masks:
            count = max(1, int(masks[name].sum()))
            codec = SparseCodec("topk", count, mask_kind)
            if feedback:
                rec, st = ErrorFeedback(codec).encode(name, x, rng, (codec_state or {}).get(name))
                new_state[name] = st
            else:
                rec, _ = codec.encode(name, np.where(masks[name], x, 0.0).astype(np.float32), rng)
            stats["values"] += int(rec.params["k"])
            stats["kinds"][name] = rec.params["mask"]
        else:
            rec, _ = Float32Codec().encode(name, x, rng)
            stats["values"] += x.size
        records.append(rec)
    return records, new_state, stats


def keep_global_mean(results: list[ClientResult], global_state: State) -> State:
    """Sample-weighted mean where a position a client did not send counts as the global
    value it was sent (no change), not as zero. Dense tensors are a plain weighted mean."""
    total = sum(r.num_samples for r in results)
    ordered = sorted(results, key=lambda r: r.client_id)
    out: State = {}
    for name, g in global_state.items():
        acc = np.zeros(g.shape, np.float64)
        for r in ordered:
            x = r.tensors[name]
            if is_prunable(name, g.shape):
                x = np.where(x != 0, x, g)
            acc += (r.num_samples / total) * x
        out[name] = acc.astype(np.float32)
    return out


# ---- the method ------------------------------------------------------------------------
class FedDIPOptions(Options):
    mode: Literal["faithful", "regrow"] = Field("regrow", description="see PAPERS.md §5")
    target_sparsity: float = Field(0.95, ge=0.0, lt=1.0, description="s_p")
    initial_sparsity: float = Field(0.5, ge=0.0, lt=1.0, description="s_0")
    total_rounds: int | None = Field(
        None, ge=1, description="T of the schedules (default: the scenario's rounds)"
    )
    ramp_end: int | None = Field(
        None,
        ge=1,
        description="R: round at which the cubic ramp reaches s_p (default: T, the code's "
        "schedule; PAPERS.md §5 runs T/2). λ and lr still follow T",
    )
    prune_every: int = Field(5, ge=1, description="R: faithful re-prune interval (rounds)")
    lambda_max: float = Field(1e-3, ge=0.0)
    lambda_min: float = Field(5e-4, ge=0.0, description="first nonzero stair")
    lambda_steps: int = Field(20, ge=1)
    lr_decay: float = Field(0.998, gt=0.0, le=1.0, description="lr_t = lr · decay^t")
    mask: Literal["auto", "bitmap", "index", "golomb"] = Field(
        "auto", description="mask encoding of sparse records"
    )
    sparse_downlink: bool = Field(True, description="false: send the pruned model as fp32")
    literal: bool = Field(
        False,
        description="regrow read literally: residual on weights, unsent positions averaged as 0",
    )

    @model_validator(mode="after")
    def _order(self):
        if self.initial_sparsity > self.target_sparsity:
            raise ValueError("initial_sparsity must not exceed target_sparsity")
        return self


class FedDIP(Algorithm):
    name = "feddip"
    summary = "FedDIP: dynamic pruning + error feedback + incremental regularization (Long 2023)"
    Options = FedDIPOptions
    server_state_fields = ("mask",)

    def async_refusal(self) -> str | None:
        return "clients send pruned weights, not differences: a staleness weight has no meaning"

    def owns_codec(self, direction: str) -> bool:
        return True  # exact per-tensor sparse records both ways

    def __init__(self, scenario: Any, options: Options | None = None):
        super().__init__(scenario, options)
        self.mask: dict[str, np.ndarray] | None = None  # server-side global mask

    # ---- schedules ---------------------------------------------------------------------
    @property
    def T(self) -> int:
        return self.options.total_rounds or self.scenario.rounds

    @property
    def ramp_end(self) -> int:
        return self.options.ramp_end or self.T

    def target(self, t: float) -> float:
        o = self.options
        return sparsity_at(t, self.ramp_end, o.initial_sparsity, o.target_sparsity)

    def lam(self, t: float) -> float:
        o = self.options
        return staircase_lambda(t, self.T, o.lambda_steps, o.lambda_min, o.lambda_max)

    # ---- server ------------------------------------------------------------------------
    def configure_round(self, rnd: int, global_state: State) -> RoundPlan:
        t = rnd - 1
        prunable = [k for k, v in global_state.items() if is_prunable(k, v.shape)]
        nnz = {k: int(np.count_nonzero(global_state[k])) for k in prunable}
        is_sparse = any(nnz[k] < global_state[k].size for k in prunable)
        downlink = "fp32"
        if self.options.sparse_downlink and is_sparse:
            dense_sizes = [v.size for k, v in global_state.items() if k not in nnz]
            # the label of the traffic rows; encode_payload sends exact per-tensor records
            downlink = f"topk:{max([*nnz.values(), *dense_sizes, 1])}"
        return RoundPlan(
            payload=global_state,
            downlink=downlink,
            uplink="feddip",  # informational: encode_update builds the records itself
            config={
                "lr": self.scenario.train.lr * self.options.lr_decay**t,
                "lambda": self.lam(t),
                "s_client": self.target(t),  # ERK density of round-1 masks
                "s_upload": self.target(rnd),  # what the server keeps after this round
            },
        )

    def encode_payload(self, rnd: int, plan: RoundPlan, rng: np.random.Generator) -> list:
        """The pruned global model as exact per-tensor sparse records (values at the mask's
        positions + the smallest mask encoding), dense tensors in fp32."""
        if plan.downlink == "fp32" or self.mask is None:
            return super().encode_payload(rnd, plan, rng)
        records, _, _ = sparse_records(plan.payload, self.mask, self.options.mask, rng)
        return records

    def aggregate(self, rnd: int, global_state: State, results: list[ClientResult]) -> State:
        if not results:
            return global_state
        if self.options.mode == "regrow" and not self.options.literal:
            avg = keep_global_mean(results, global_state)  # unsent = the global value
        else:
            avg = weighted_mean(results)  # clients send weights, not differences
        prunable = {k: v for k, v in avg.items() if is_prunable(k, v.shape)}
        s = self.target(rnd)
        old = self.mask
        if self.options.mode == "faithful":
            allowed = old if old is not None else {k: v != 0 for k, v in prunable.items()}
            if rnd == 1 or rnd % self.options.prune_every == 0 or rnd >= self.ramp_end:
                new = global_magnitude_mask(prunable, s, allowed)
            else:
                new = allowed
        else:
            new = global_magnitude_mask(prunable, s)
        self._last = {"old": old, "new": new}
        self.mask = new
        return {
            k: (np.where(new[k], v, 0.0).astype(np.float32) if k in new else v)
            for k, v in avg.items()
        }

    def after_aggregate(
        self, rnd: int, global_state: State, results: list[ClientResult]
    ) -> dict[str, Any]:
        if not results or self.mask is None:
            return {}
        mask, old = self.mask, self._last["old"]
        n = sum(m.size for m in mask.values())
        kept = sum(int(m.sum()) for m in mask.values())
        row: dict[str, Any] = {
            "sparsity": 1.0 - kept / n,
            "target_sparsity": self.target(rnd),
            "lambda": self.lam(rnd - 1),
            "lr": self.scenario.train.lr * self.options.lr_decay ** (rnd - 1),
        }
        if old is not None:
            row["mask_regrown"] = sum(int((mask[k] & ~old[k]).sum()) for k in mask)
            row["mask_pruned"] = sum(int((old[k] & ~mask[k]).sum()) for k in mask)
            row["mask_nested"] = all(not (mask[k] & ~old[k]).any() for k in mask)
        # uplink: paper bits and mask encodings reported by the clients
        up_vals = sum(r.metrics.get("values_up", 0.0) for r in results)
        row["paper_bits_up"] = PAPER_BITS_PER_VALUE * up_vals
        row["up_mask_kinds"] = {
            kind: int(sum(r.metrics.get(f"mask_{kind}", 0.0) for r in results))
            for kind in ("index", "bitmap", "golomb")
        }
        # downlink of the next round: the exact per-tensor records vs what the runtime sends
        rng = np.random.default_rng(0)  # topk is deterministic; the rng is unused
        recs, _, st = sparse_records(global_state, mask, self.options.mask, rng)
        exact = wire_bytes(pack_message("model", {"round": rnd + 1}, recs))
        spec = self.configure_round(rnd + 1, global_state).downlink
        # what one shared spec would cost (before the encode_payload hook sent exact records)
        rt_recs, _ = encode_tensors(global_state, parse_codec(spec), rng, None)
        runtime = wire_bytes(pack_message("model", {"round": rnd + 1}, rt_recs))
        row["down_values"] = st["values"]
        row["paper_bits_down_per_client"] = PAPER_BITS_PER_VALUE * st["values"]
        row["down_bytes_exact"] = exact
        row["down_bytes_runtime"] = runtime
        row["down_mask_kinds"] = st["kinds"]
        row["down_spec"] = spec
        return row

    # ---- client ------------------------------------------------------------------------
    def _client_masks(self, ctx: ClientContext) -> dict[str, torch.Tensor]:
        """This client's masks, on the model's device (runtime.device)."""
        device = next(ctx.model.parameters()).device
        prunable = {k: v for k, v in ctx.global_state.items() if is_prunable(k, tuple(v.shape))}
        if ctx.round == 1:  # everything is dense: draw this client's own ERK mask
            dens = erk_densities(
                {k: tuple(v.shape) for k, v in prunable.items()},
                1.0 - float(ctx.config.get("s_client", self.options.initial_sparsity)),
            )
            rng = np.random.default_rng(ctx.seed)
            masks = {k: random_mask(v.shape, dens[k], rng) for k, v in sorted(prunable.items())}
        else:
            masks = {k: v != 0 for k, v in prunable.items()}
        return {k: torch.from_numpy(m).to(device) for k, m in masks.items()}

    def local_train(self, ctx: ClientContext) -> ClientUpdate:
        ctx.cache["masks"] = self._client_masks(ctx)
        params = dict(ctx.model.named_parameters())
        ctx.cache["masked"] = {k: params[k] for k in ctx.cache["masks"] if k in params}
        update = super().local_train(ctx)  # the FedAvg loop with the three hooks below
        update.tensors = state_from_model(ctx.model)  # dense local weights, not Δ
        return update

    def forward(self, ctx: ClientContext, xb: torch.Tensor) -> torch.Tensor:
        """DPF: forward (and so the gradient) at w ⊙ m; the dense w is kept aside."""
        masks, masked = ctx.cache["masks"], ctx.cache["masked"]
        ctx.cache["dense"] = {k: p.detach().clone() for k, p in masked.items()}
        with torch.no_grad():
            for k, p in masked.items():
                p.mul_(masks[k])
        return ctx.model(xb)

    def extra_loss(self, ctx: ClientContext, loss: torch.Tensor) -> torch.Tensor:
        lam = float(ctx.config.get("lambda", 0.0))
        if lam <= 0:
            return loss
        return loss + lam * sum(torch.linalg.vector_norm(p) for p in ctx.cache["masked"].values())

    def after_backward(self, ctx: ClientContext) -> None:
        """... and the gradient is applied to the dense w (the optimizer steps next)."""
        with torch.no_grad():
            for k, p in ctx.cache["masked"].items():
                p.copy_(ctx.cache["dense"][k])

    def encode_update(self, ctx: ClientContext, update: ClientUpdate, up: Uplink) -> Encoded:
        local, rng, codec_state = update.tensors, up.rng, up.state
        if self.options.mode == "faithful":
            # round 1: the dense local weights, which the code averages (see the module doc)
            masks = (
                {k: m.cpu().numpy() for k, m in ctx.cache["masks"].items()} if ctx.round > 1 else {}
            )
            records, new_state, st = sparse_records(local, masks, self.options.mask, rng)
        elif self.options.literal:
            s = float(ctx.config.get("s_upload", self.options.target_sparsity))
            prunable = {k: v for k, v in local.items() if is_prunable(k, v.shape)}
            acc = {
                k: v + np.asarray(codec_state.get(k, {}).get("residual", 0.0), np.float32)
                for k, v in prunable.items()
            }
            masks = global_magnitude_mask(acc, s)  # per-tensor counts of the global top-k
            records, new_state, st = sparse_records(
                local, masks, self.options.mask, rng, codec_state, feedback=True
            )
        else:
            s = float(ctx.config.get("s_upload", self.options.target_sparsity))
            g = ctx.global_state
            change = {  # a = (w_local − w_global) + r: what this client wants the server to add
                k: (v - g[k]) + np.asarray(codec_state.get(k, {}).get("residual", 0.0), np.float32)
                for k, v in local.items()
                if is_prunable(k, v.shape)
            }
            intended = {k: (g[k] + a).astype(np.float32) for k, a in change.items()}
            masks = global_magnitude_mask(intended, s)  # per-tensor counts of the global top-k
            send = {
                k: (np.where(masks[k], intended[k], 0.0) if k in masks else v)
                for k, v in local.items()
            }
            for k in masks:
                send[k] = send[k].astype(np.float32)
            records, _, st = sparse_records(send, masks, self.options.mask, rng)
            # the residual: the change at the positions not sent (the server keeps its value)
            new_state = {
                k: {"residual": np.where(masks[k], 0.0, a).astype(np.float32)}
                for k, a in change.items()
            }
        metrics = {"values_up": float(st["values"])}
        for kind in ("index", "bitmap", "golomb"):
            metrics[f"mask_{kind}"] = float(sum(1 for v in st["kinds"].values() if v == kind))
        if new_state:
            metrics["residual_l1"] = float(
                sum(np.abs(s_["residual"]).sum() for s_ in new_state.values())
            )
        return Encoded(records, new_state, metrics)
