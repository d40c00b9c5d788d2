"""Several clients of a round trained together (`runtime.batch_clients`).

Each step of local training is one step of every client of the group that still has steps
left: its mini-batch drawn as `Algorithm.local_train` draws it (a `torch.randperm` of the
client's own generator at the start of each of its epochs), its own loss, and one SGD update
of all of them (`SGD`: each client its own momentum buffer, weight decay as
`torch.optim.SGD`). The clients' losses are summed before one backward pass: client c's loss
depends only on client c's tensors, so the gradient of the sum is each client's own gradient.
Two ways to compute a step (`runtime.batch_kernels`):

- "vmap": the clients' tensors stacked along a new leading dimension, every client's forward
  pass at once (`torch.func.vmap` over `functional_call`): one vectorised computation, a
  few large kernels instead of many small ones (what a GPU wants). A client's short last
  batch is padded and masked out of its loss. Each client's update equals its sequential
  update up to float rounding (tests/fedsim/test_batched.py holds it within 1e-5).
- "per_client": each client's forward pass with its own kernels (`functional_call` on its
  own tensors), in lockstep: bit for bit the sequential computation. The default on the
  CPU, where vmap's stacked kernels (grouped convolutions, `bmm`) are slower than the plain
  ones (benchmarks/README.md, batched_vs_sequential).

Refused by `fedsim validate` (fedsim/scenario/composition.py): methods whose client training
is their own (`Algorithm.batching_refusal`), Adam, models with BatchNorm (running
statistics would mix padded samples in) or dropout (its random masks follow the global RNG
of a sequential run), and the asynchronous schedule (FedBuff dispatches replacement clients
one at a time, as results arrive: no groups to form, and none that would not depend on
timing).

Every executor trains the same groups: a round's tasks in consecutive groups of N, formed
when they are submitted (`Executor.run`, `WorkerPool.submit_group`), sent whole to one client
actor (in process, a ZeroMQ worker, a Ray actor) and run again whole if that actor is lost.
So a batched run has one hash whatever executor and worker count run it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.func import functional_call, vmap

from fedsim.algorithms.base import Algorithm, ClientContext, ClientUpdate

RANDOM_OR_RUNNING = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.modules.dropout._DropoutNd)


def model_refusal(model: torch.nn.Module) -> str | None:
    """Why `model` cannot be trained batched, or None."""
    for name, m in model.named_modules():
        if isinstance(m, RANDOM_OR_RUNNING):
            kind = (
                "BatchNorm" if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) else "dropout"
            )
            return (
                f"the model has {kind} ({name}: {type(m).__name__}), which batched clients "
                "cannot reproduce exactly; use batch_clients = 1"
            )
    return None


def batching_refusal(scenario: Any, algorithm: Algorithm) -> str | None:
    """Why `runtime.batch_clients` > 1 cannot apply to this scenario, or None."""
    if scenario.server.mode == "async":
        return (
            "FedBuff dispatches each replacement client alone, as an earlier one arrives: "
            "there is no group of clients to train together; use batch_clients = 1"
        )
    why = algorithm.batching_refusal()
    if why:
        return f"{scenario.algorithm.name} cannot train clients batched: {why}"
    from fedsim.models import build_model
    from fedsim.scenario.memory import data_shape

    shape, classes, *_ = data_shape(scenario)
    with torch.device("meta"):
        model = build_model(scenario.model.name, shape, classes, **scenario.model.args)
    return model_refusal(model)


KERNELS = ("vmap", "per_client")


def default_kernels(device: torch.device) -> str:
    """vmap on accelerators; per-client kernels on the CPU, where the stacked kernels vmap
    makes of convolutions (grouped convolutions) and linear layers (`bmm`) run slower than
    the plain ones, and the work is compute-bound (benchmarks/README.md,
    batched_vs_sequential)."""
    return "per_client" if device.type == "cpu" else "vmap"


class Batches:
    """Each client's mini-batches, drawn as `Algorithm.local_train` draws them: a
    `torch.randperm` of the client's own generator at the start of each of its epochs."""

    def __init__(self, ctxs: list[ClientContext], steps: list[int], bsz: int):
        self.ctxs, self.steps, self.bsz = ctxs, steps, bsz
        self.sizes = [len(c.y) for c in ctxs]
        self.per_epoch = [max(1, math.ceil(n / bsz)) for n in self.sizes]
        self.perms: list[torch.Tensor | None] = [None] * len(ctxs)

    def live(self, step: int) -> list[int]:
        return [c for c, s in enumerate(self.steps) if step < s]

    def indices(self, c: int, step: int) -> torch.Tensor:
        k = step % self.per_epoch[c]
        if k == 0:
            self.perms[c] = torch.randperm(self.sizes[c], generator=self.ctxs[c].generator)
        return self.perms[c][k * self.bsz : (k + 1) * self.bsz]


class SGD:
    """Every client's own SGD step, as torch.optim.SGD computes it (no dampening, no
    Nesterov): d = g + λ·w; b = d on the client's first step, else μ·b + d; w ← w − η·b —
    each operation once over the tensors of all the clients that step (`torch._foreach_*`).
    A tensor may hold one client's parameter (key (c, name)) or every client's, stacked
    (key (None, name)); `split` turns stacked momentum buffers into per-client views."""

    def __init__(self, lrs: list[float], momentum: float, wd: float):
        self.lrs, self.momentum, self.wd = lrs, momentum, wd
        self.moment: dict[tuple[int | None, str], torch.Tensor] = {}

    @torch.no_grad()
    def step(self, items: list[tuple[tuple[int | None, str], float, torch.Tensor, torch.Tensor]]):
        """`items`: (key, learning rate, parameter, gradient); parameters updated in place."""
        if not items:
            return
        ps = [p for _, _, p, _ in items]
        gs = [g for _, _, _, g in items]
        if self.wd != 0:
            gs = list(torch._foreach_add(gs, ps, alpha=self.wd))
        if self.momentum != 0:
            old = [i for i, (key, *_) in enumerate(items) if key in self.moment]
            if old:
                bufs = [self.moment[items[i][0]] for i in old]
                torch._foreach_mul_(bufs, self.momentum)
                torch._foreach_add_(bufs, [gs[i] for i in old])
            for i, (key, *_) in enumerate(items):
                if key not in self.moment:  # the client's first step
                    self.moment[key] = gs[i].clone()
                gs[i] = self.moment[key]
        for lr in sorted({lr for _, lr, _, _ in items}):
            at = [i for i, (_, r, _, _) in enumerate(items) if r == lr]
            torch._foreach_add_([ps[i] for i in at], [gs[i] for i in at], alpha=-lr)

    def split(self, clients: int) -> None:
        for (c, name), buf in list(self.moment.items()):
            if c is None:
                del self.moment[(c, name)]
                for i in range(clients):
                    self.moment[(i, name)] = buf[i]


def train_together(
    algorithm: Algorithm,
    model: torch.nn.Module,
    ctxs: list[ClientContext],
    starts: list[dict[str, torch.Tensor]],
    kernels: str | None = None,
) -> list[ClientUpdate]:
    """Local training of every client in `ctxs` at once; `starts[i]` is client i's full
    state_dict before training (the received model: a copy of the caller's, which training
    may change in place). One `ClientUpdate` per client.
    `kernels`: "vmap" (stacked, one vectorised computation) or "per_client" (each client's
    own kernels, in lockstep); default by device (`default_kernels`)."""
    t = algorithm.scenario.train
    kernels = kernels or default_kernels(ctxs[0].x.device)
    if kernels not in KERNELS:
        raise ValueError(f"kernels: {kernels!r} is not one of {KERNELS}")
    sizes = [len(c.y) for c in ctxs]
    batches = Batches(ctxs, [algorithm.local_steps(n) for n in sizes], t.batch_size)
    sgd = SGD(
        [float(c.config.get("lr", t.lr)) for c in ctxs], float(t.momentum), float(t.weight_decay)
    )
    train = _vmap if kernels == "vmap" else _per_client
    model.train()
    finals, losses = train(algorithm, model, ctxs, starts, batches, sgd)
    names = sorted(k for k, v in starts[0].items() if v.is_floating_point())
    out = []
    for c, ctx in enumerate(ctxs):
        local = {
            k: finals[c].get(k, starts[c][k]).detach().cpu().numpy().astype(np.float32, copy=True)
            for k in names
        }
        delta = {
            k: (local[k] - ctx.global_state[k]).astype(np.float32)
            for k in ctx.global_state
            if k in local
        }
        loss_c = float(np.mean(losses[c])) if losses[c] else 0.0
        out.append(ClientUpdate(tensors=delta, num_samples=sizes[c], train_loss=loss_c))
    return out


def _per_client(algorithm, model, ctxs, starts, batches, sgd):
    """Each client's forward pass with its own kernels (`functional_call` on its own
    tensors), one backward pass over all of them, one SGD step for all: the sequential
    computation of each client, client by client within a step. Without a method loss term,
    each client's update is bit for bit its sequential one."""
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    # the starts are the caller's private copies: trained in place, no second copy
    params = [{n: s[n].detach().requires_grad_(True) for n in trainable} for s in starts]
    rest = [
        {n: s[n] for n in s if n not in trainable} for s in starts
    ]  # buffers and frozen parameters, as received
    extra = type(algorithm).extra_loss_batched is not Algorithm.extra_loss_batched
    anchor = [{n: p.detach().clone() for n, p in ps.items()} for ps in params] if extra else []
    losses: list[list[float]] = [[] for _ in ctxs]
    for step in range(max(batches.steps, default=0)):
        live = batches.live(step)
        total = None
        for c in live:
            idx = batches.indices(c, step)
            out = functional_call(model, (params[c], rest[c]), (ctxs[c].x[idx],), strict=False)
            loss = torch.nn.functional.cross_entropy(out, ctxs[c].y[idx])
            losses[c].append(float(loss.detach()))
            if extra:
                one = {n: p.unsqueeze(0) for n, p in params[c].items()}
                ref = {n: p.unsqueeze(0) for n, p in anchor[c].items()}
                loss = algorithm.extra_loss_batched(loss.unsqueeze(0), one, ref).squeeze(0)
            total = loss if total is None else total + loss
        wrt = [(c, n, params[c][n]) for c in live for n in trainable]
        grads = torch.autograd.grad(total, [p for *_, p in wrt], allow_unused=True)
        sgd.step(
            [
                ((c, n), sgd.lrs[c], p, g)
                for (c, n, p), g in zip(wrt, grads, strict=True)
                if g is not None
            ]
        )
    return [{**r, **p} for p, r in zip(params, rest, strict=True)], losses


def _vmap(algorithm, model, ctxs, starts, batches, sgd):
    """The clients' tensors stacked along a new leading dimension; each step runs every
    client's forward pass at once (`torch.func.vmap` over `functional_call`) and sums the
    clients' own mean losses — client c's loss depends only on slice c, so the gradient of
    the sum is each client's own gradient. A client's short last batch is padded and masked
    out of its loss, so its loss is the mean over its real samples."""
    bsz, n_cl = batches.bsz, len(ctxs)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]  # module order
    params = {n: torch.stack([s[n] for s in starts]) for n in trainable}
    buffers = {n: torch.stack([s[n] for s in starts]) for n, _ in model.named_buffers()}
    frozen = {
        n: torch.stack([s[n] for s in starts])
        for n, _ in model.named_parameters()
        if n not in trainable
    }
    anchor = {n: p.clone() for n, p in params.items()}  # the received weights
    for p in params.values():
        p.requires_grad_(True)
    device = ctxs[0].x.device

    def one(p, b, x):
        return functional_call(model, (p, b), (x,))

    forward = vmap(one)
    sample = ctxs[0].x.shape[1:]
    losses: list[list[float]] = [[] for _ in ctxs]
    for step in range(max(batches.steps, default=0)):
        live = batches.live(step)
        xs = torch.zeros((n_cl, bsz, *sample), dtype=ctxs[0].x.dtype, device=device)
        ys = torch.zeros((n_cl, bsz), dtype=ctxs[0].y.dtype, device=device)
        mask = torch.zeros((n_cl, bsz), device=device)
        for c in live:
            idx = batches.indices(c, step)
            xs[c, : len(idx)] = ctxs[c].x[idx]
            ys[c, : len(idx)] = ctxs[c].y[idx]
            mask[c, : len(idx)] = 1.0
        out = forward({**params, **frozen}, buffers, xs)
        ce = torch.nn.functional.cross_entropy(out.flatten(0, 1), ys.flatten(), reduction="none")
        loss = (ce.view(n_cl, bsz) * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        total = algorithm.extra_loss_batched(loss, params, anchor)
        on = torch.zeros(n_cl, device=device, dtype=loss.dtype)
        on[live] = 1.0
        grads = torch.autograd.grad((total * on).sum(), list(params.values()))
        values = loss.detach().cpu().tolist()
        for c in live:
            losses[c].append(values[c])
        if len(live) == n_cl and len(set(sgd.lrs)) == 1:  # every client: the stacked tensors
            sgd.step(
                [((None, n), sgd.lrs[0], params[n], g) for n, g in zip(params, grads, strict=True)]
            )
        else:
            sgd.split(n_cl)
            sgd.step(
                [
                    ((c, n), sgd.lrs[c], params[n][c], g[c])
                    for c in live
                    for n, g in zip(params, grads, strict=True)
                ]
            )
    finals = [
        {n: v[c] for part in (params, buffers, frozen) for n, v in part.items()}
        for c in range(n_cl)
    ]
    return finals, losses
