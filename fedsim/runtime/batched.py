"""Several clients of a round trained as one vectorised computation (`runtime.batch_clients`).

The clients' parameters and buffers are stacked along a new leading dimension; each step
runs every client's forward pass at once (`torch.func.vmap` over `functional_call`), sums
the clients' own mean losses — client c's loss depends only on slice c, so the gradient of
the sum is each client's own gradient — and applies each client's own SGD step (momentum
and weight decay exactly as `torch.optim.SGD` computes them) only while that client has
steps left. Mini-batches are drawn as `Algorithm.local_train` draws them: a
`torch.randperm` of the client's own generator at the start of each of its epochs; a
client's short last batch is padded and masked out of its loss, so its loss is the mean over
its real samples. Each client's update therefore equals its sequential update up to float
rounding (tests/fedsim/test_batched.py holds it within 1e-5).

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


def sgd_step(
    p: torch.Tensor,
    g: torch.Tensor,
    moment: dict[str, torch.Tensor | None],
    name: str,
    live: list[int],
    lrs: list[float],
    momentum: float,
    wd: float,
) -> None:
    """One SGD step of the stacked parameter `p` for the clients in `live`, in place, as
    torch.optim.SGD computes it (no dampening, no Nesterov): d = g + λ·w; b = d on the
    first step, else μ·b + d; w ← w − η·b. Clients not in `live` keep w and b."""
    whole = len(live) == p.shape[0] and len(set(lrs)) == 1
    if wd != 0:
        g.add_(p, alpha=wd)
    if momentum != 0:
        if moment[name] is None:  # every client's first step is step 0
            moment[name] = g.clone()
        elif whole:
            moment[name].mul_(momentum).add_(g)
        else:
            for c in live:
                moment[name][c].mul_(momentum).add_(g[c])
        g = moment[name]
    if whole:
        p.add_(g, alpha=-lrs[0])
    else:
        for c in live:
            p[c].add_(g[c], alpha=-lrs[c])


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


def train_together(
    algorithm: Algorithm,
    model: torch.nn.Module,
    ctxs: list[ClientContext],
    starts: list[dict[str, torch.Tensor]],
) -> list[ClientUpdate]:
    """Local training of every client in `ctxs` at once; `starts[i]` is client i's full
    state_dict before training (the received model). One `ClientUpdate` per client."""
    t = algorithm.scenario.train
    bsz, n_cl = t.batch_size, len(ctxs)
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
    sizes = [len(c.y) for c in ctxs]
    steps = [algorithm.local_steps(n) for n in sizes]
    per_epoch = [max(1, math.ceil(n / bsz)) for n in sizes]
    device = ctxs[0].x.device
    lrs = [float(c.config.get("lr", t.lr)) for c in ctxs]
    momentum, wd = float(t.momentum), float(t.weight_decay)
    moment: dict[str, torch.Tensor | None] = dict.fromkeys(params)

    def one(p, b, x):
        return functional_call(model, (p, b), (x,))

    forward = vmap(one)
    model.train()
    sample = ctxs[0].x.shape[1:]
    perms: list[torch.Tensor | None] = [None] * n_cl
    losses: list[list[float]] = [[] for _ in ctxs]
    for step in range(max(steps, default=0)):
        active = [step < s for s in steps]
        xs = torch.zeros((n_cl, bsz, *sample), dtype=ctxs[0].x.dtype, device=device)
        ys = torch.zeros((n_cl, bsz), dtype=ctxs[0].y.dtype, device=device)
        mask = torch.zeros((n_cl, bsz), device=device)
        for c, ctx in enumerate(ctxs):
            if not active[c]:
                continue
            k = step % per_epoch[c]
            if k == 0:
                perms[c] = torch.randperm(sizes[c], generator=ctx.generator)
            idx = perms[c][k * bsz : (k + 1) * bsz]
            xs[c, : len(idx)] = ctx.x[idx]
            ys[c, : len(idx)] = ctx.y[idx]
            mask[c, : len(idx)] = 1.0
        out = forward({**params, **frozen}, buffers, xs)
        ce = torch.nn.functional.cross_entropy(out.flatten(0, 1), ys.flatten(), reduction="none")
        loss = (ce.view(n_cl, bsz) * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        total = algorithm.extra_loss_batched(loss, params, anchor)
        on = torch.tensor(active, device=device, dtype=loss.dtype)
        grads = torch.autograd.grad((total * on).sum(), list(params.values()))
        for c, v in enumerate(loss.detach().cpu().tolist()):
            if active[c]:
                losses[c].append(v)
        with torch.no_grad():
            live = [c for c in range(n_cl) if active[c]]
            for (name, p), g in zip(list(params.items()), grads, strict=True):
                if p.stride() != g.stride():  # vmapped linear layers: transposed gradients
                    q = torch.empty_strided(p.shape, g.stride(), dtype=p.dtype, device=p.device)
                    params[name] = p = q.copy_(p).requires_grad_(True)  # same layout: fast
                sgd_step(p, g, moment, name, live, lrs, momentum, wd)
    names = sorted(k for k, v in starts[0].items() if v.is_floating_point())
    out_updates = []
    for c, ctx in enumerate(ctxs):
        local = {}
        for k in names:
            v = params.get(k, buffers.get(k, frozen.get(k)))
            v = v[c] if v is not None else starts[c][k]
            local[k] = v.detach().cpu().numpy().astype(np.float32, copy=True)
        delta = {
            k: (local[k] - ctx.global_state[k]).astype(np.float32)
            for k in ctx.global_state
            if k in local
        }
        loss_c = float(np.mean(losses[c])) if losses[c] else 0.0
        out_updates.append(ClientUpdate(tensors=delta, num_samples=sizes[c], train_loss=loss_c))
    return out_updates
