"""Will the run fit in this machine's memory? An estimate made before anything is allocated.

A synthetic dataset of `train_size = 1e9` or a model with `hidden = [1e6, 1e6]` would
otherwise fill the machine in seconds and die in the allocator (or take the machine with
it). The estimate counts float32 bytes of what the run holds at once:

- data: the training and test inputs (float32) and labels (int64), once in the coordinator
  and once in every worker process or Ray actor it starts on this host (synthetic data is
  generated in place, without temporaries of the training array's size);
- model: parameters and buffers, built on torch's "meta" device (shapes only, no memory),
  times the copies the coordinator keeps (model, global state, initial state) and those a
  training client keeps (gradients, optimizer state; its own model in a worker process);
- client state: one model-sized residual per client that has trained, when a codec uses
  error feedback and the state store is in memory (spilling: at most `state_memory`);
- decoded updates: one model-sized update per client aggregated in a round (sync: the
  selected ceil(K x overcommit); async: the buffer).

It is a lower bound on what a run needs (Python, torch and allocator overheads come on
top), so a refusal is never a false alarm on a machine that could have run it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

F32 = 4
I64 = 8
COORDINATOR_MODEL_COPIES = 3  # model, global state, initial state
# What a training client holds beside the model: gradients, and the optimizer's state.
OPTIMIZER_COPIES = {"sgd": 0, "adam": 2}


def machine_memory() -> int | None:
    """Physical memory, or the cgroup limit of this container if that is lower."""
    limits = []
    try:
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            limits.append(int(text))
    return min(limits) if limits else None


def fmt_size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"  # pragma: no cover


def data_shape(scenario: Any) -> tuple[tuple[int, ...], int, int, int, str]:
    """(input shape, classes, train size, test size, the field that sets the size).

    Synthetic data is described by its settings; the real datasets are small (at most
    CIFAR-10's 180 MB) and cached, so they are loaded to read their sizes."""
    d = scenario.data
    if d.dataset == "synthetic":
        s = d.synthetic
        shape = tuple(int(x) for x in s.shape)
        grows = math.prod(shape) / 784 >= s.train_size / 4000  # which departs more from default
        field = "data.synthetic.shape" if grows else "data.synthetic.train_size"
        return shape, s.classes, s.train_size, s.test_size, field
    from fedsim.runtime.build import load_data

    ds = load_data(scenario)
    shape = tuple(int(x) for x in ds.input_shape)
    return shape, int(ds.num_classes), len(ds.y_train), len(ds.y_test), "data.dataset"


def model_numel(scenario: Any, input_shape: tuple[int, ...], classes: int) -> int:
    """Parameters + buffers of the scenario's model, built without allocating any memory."""
    import torch

    from fedsim.errors import ScenarioError
    from fedsim.models import build_model

    m = scenario.model
    try:
        with torch.device("meta"):
            model = build_model(m.name, input_shape, classes, **m.args)
    except (RuntimeError, OverflowError, TypeError, ValueError) as e:
        msg = " ".join(str(e).split())
        raise ScenarioError(f"model {m.name}: {msg}", field="model.args") from None
    return sum(t.numel() for t in (*model.parameters(), *model.buffers()))


def estimate(scenario: Any) -> tuple[int, dict[str, int]]:
    """(total bytes, bytes by the scenario field that drives each part)."""
    sc = scenario
    shape, classes, n_train, n_test, data_field = data_shape(sc)
    sample = math.prod(shape) * F32 + I64
    data = (n_train + n_test) * sample
    rt = sc.runtime
    if rt.executor == "ray":
        local_procs = 0 if rt.ray_address else rt.workers  # actors of a remote cluster: elsewhere
    else:
        local_procs = 0 if rt.transport == "inproc" else rt.workers
    model_bytes = model_numel(sc, shape, classes) * F32
    t = sc.train
    per_trainer = 1 + OPTIMIZER_COPIES.get(t.optimizer, 0) + (t.momentum > 0)
    if local_procs:  # each worker process or actor holds its own model as well
        trainer_copies = local_procs * (1 + per_trainer)
    else:  # in process, clients train one after the other
        trainer_copies = per_trainer
    if sc.server.mode == "async":
        updates = sc.server.buffer_size  # decoded as they arrive, held until aggregated
        participants = sc.rounds * sc.server.buffer_size + sc.server.concurrency
    else:
        updates = math.ceil(sc.clients.per_round * sc.server.overcommit)
        participants = sc.rounds * updates
    specs = f"{sc.codec.uplink} {sc.codec.downlink}"
    # error feedback keeps a model-sized residual for every client that has trained
    ef = "ef(" in specs and rt.state_store != "disk"
    stateful = min(sc.clients.count, participants) if ef else 0
    state_bytes = model_bytes * stateful
    if rt.state_store == "spill":  # in memory up to state_memory, the rest on disk
        state_bytes = min(state_bytes, int(rt.state_memory))
    parts: dict[str, int] = {}
    for field, n in (
        (data_field, data * (1 + local_procs)),
        (
            _model_field(sc, data_field),
            model_bytes * (COORDINATOR_MODEL_COPIES + trainer_copies),
        ),
        ("clients.count", state_bytes),
        ("clients.per_round", model_bytes * updates),
    ):
        parts[field] = parts.get(field, 0) + n
    return sum(parts.values()), parts


def _model_field(sc: Any, data_field: str) -> str:
    """What sets the model's size: its arguments, else the input size it is built for."""
    if sc.model.args:
        return "model.args"
    return "data.synthetic.shape" if data_field.startswith("data.synthetic") else "model.name"


def memory_problem(scenario: Any, available: int | None = None) -> tuple[str, str] | None:
    """(field, message) when the estimate exceeds this machine's memory, else None."""
    available = machine_memory() if available is None else available
    if not available:
        return None
    total, parts = estimate(scenario)
    if total <= available:
        return None
    field = max(parts, key=lambda k: parts[k])
    detail = ", ".join(f"{k} {fmt_size(v)}" for k, v in parts.items() if v)
    return field, (
        f"the run needs at least {fmt_size(total)} of memory ({detail}); "
        f"this machine has {fmt_size(available)}"
    )
