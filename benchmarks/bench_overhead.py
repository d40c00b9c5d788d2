"""overhead_inproc: a whole fedsim run in process over a bare PyTorch loop doing the same work.

The workload is the quick start (mnist5k, CNN, 20 Dirichlet clients, 5 per round) with 1
local epoch and 10 rounds, evaluated every round. fedsim runs it through its Coordinator
with the in-process transport: every model and update encoded, sent through ZeroMQ,
decoded, the network model run over the real bytes, outputs written. The reference is the
same federated training written as a plain loop: the same clients in each round, the same
torch seeds, the same mini-batches and optimizer steps, the same float64 weighted mean and
the same evaluations, with the same torch thread count, in the same process. Because the
work is identical, so is the final model: the benchmark checks that both runs end with the
same model_sha256, which is what proves the loop is a fair reference.

The two are timed alternately (reference first, then fedsim first) and the figure is the
median of the per-pair ratios, so both see the same machine load.

    python benchmarks/bench_overhead.py [--quick] [--json PATH]
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fedsim.runtime import seeding
from fedsim.runtime.build import load_data, make_model, make_partitions
from fedsim.runtime.coordinator import Coordinator
from fedsim.runtime.outputs import model_sha256
from fedsim.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "scenarios" / "quickstart.toml"
TARGET = 1.10  # at most


def quickstart_scenario(quick: bool, *overrides: str):
    """The overhead workload: quick start, 1 local epoch, 10 rounds (quick: 2 rounds of 3 steps)."""
    base = ["train.local_epochs=1", "eval.every=1", "rounds=10"]
    if quick:
        base += ["rounds=2", "train.local_steps=3"]
    return load_scenario(QUICKSTART, [*base, *overrides])


def run_fedsim(sc) -> tuple[float, dict]:
    """Wall time of one whole Coordinator run (setup, rounds, outputs) and its summary."""
    with tempfile.TemporaryDirectory(prefix="fedsim-bench-") as out:
        t0 = time.perf_counter()
        summary = Coordinator(sc, Path(out) / "run").run()
        wall = time.perf_counter() - t0
        rows = (Path(out) / "run" / "metrics.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in rows]
    summary["rounds_wall_s"] = [r["wall_time"] for r in rows]
    summary["accuracy_curve"] = [r.get("test_accuracy") for r in rows]
    return wall, summary


# ---- the reference: plain PyTorch, the same steps --------------------------------------------


def _train_client(model, opt_args, x, y, seed, batch, epochs, steps):
    """Local SGD exactly as fedsim's FedAvg client does it; returns the mean training loss."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], **opt_args)
    n = len(y)
    per_epoch = math.ceil(n / batch)
    if steps is None:
        steps = epochs * per_epoch
    losses = []
    perm = None
    for step in range(steps):
        k = step % per_epoch
        if k == 0:
            perm = torch.randperm(n, generator=gen)
        idx = perm[k * batch : (k + 1) * batch]
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        losses.append(float(loss.detach()))
        loss.backward()
        opt.step()
    return float(np.mean(losses)) if losses else 0.0


def reference_loop(sc, device: str = "cpu") -> tuple[float, dict]:
    """The same federated training as a bare loop; (wall seconds, summary-like dict).
    `device`: where model and data live (gpu_check.py's bare GPU loop)."""
    t0 = time.perf_counter()
    torch.set_num_threads(sc.runtime.torch_threads)
    ds = load_data(sc)
    parts = make_partitions(sc, ds)
    model = make_model(sc, ds).to(device)
    t = sc.train
    opt_args = {"lr": t.lr, "momentum": t.momentum, "weight_decay": t.weight_decay}
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    names = sorted(k for k, v in initial.items() if v.is_floating_point())
    params = dict(model.state_dict())
    global_w = {k: params[k].cpu().numpy().astype(np.float32, copy=True) for k in names}
    x_all = torch.from_numpy(np.array(ds.x_train)).to(device)
    y_all = torch.from_numpy(np.array(ds.y_train)).to(device)
    x_test = torch.from_numpy(np.array(ds.x_test)).to(device)
    y_test = torch.from_numpy(np.array(ds.y_test)).to(device)

    def load_global():
        model.load_state_dict(initial)
        with torch.no_grad():
            for k in names:
                params[k].copy_(torch.from_numpy(global_w[k]))

    accs = []
    for rnd in range(1, sc.rounds + 1):
        rng = seeding.rng_for(sc.seed, seeding.SELECT, rnd)
        m = min(sc.clients.count, math.ceil(sc.clients.per_round * sc.server.overcommit))
        chosen = sorted(int(c) for c in rng.choice(sc.clients.count, size=m, replace=False))
        deltas, sizes = [], []
        for c in chosen:
            load_global()
            idx = torch.from_numpy(parts[c]).to(device)
            seed = seeding.derive_seed(sc.seed, seeding.TRAIN, rnd, c)
            x, y = x_all[idx], y_all[idx]
            _train_client(model, opt_args, x, y, seed, t.batch_size, t.local_epochs, t.local_steps)
            sd = model.state_dict()
            deltas.append({k: sd[k].cpu().numpy().astype(np.float32) - global_w[k] for k in names})
            sizes.append(len(y))
        total = sum(sizes)
        for k in names:
            acc = np.zeros(global_w[k].shape, dtype=np.float64)
            for d, n in zip(deltas, sizes, strict=True):
                acc += (n / total) * d[k].astype(np.float64)
            global_w[k] = (global_w[k] + acc.astype(np.float32)).astype(np.float32)
        if rnd % sc.eval.every == 0 or rnd == sc.rounds:
            load_global()
            model.eval()
            correct, eb = 0, sc.eval.batch_size
            with torch.no_grad():
                for i in range(0, len(y_test), eb):
                    out = model(x_test[i : i + eb])
                    correct += int((out.argmax(1) == y_test[i : i + eb]).sum())
            accs.append(correct / len(y_test))
    load_global()
    wall = time.perf_counter() - t0
    sha = model_sha256(model.cpu().state_dict())
    return wall, {"final_accuracy": accs[-1], "model_sha256": sha, "accuracy_curve": accs}


def run(quick: bool = False) -> dict[str, dict]:
    sc = quickstart_scenario(quick)
    load_data(sc)  # warm the dataset cache for both sides
    pairs = 1 if quick else 2
    fed_t, ref_t, ratios = [], [], []
    fed_sum = ref_sum = None
    for i in range(pairs):
        if i % 2 == 0:
            rt, ref_sum = reference_loop(sc)
            ft, fed_sum = run_fedsim(sc)
        else:
            ft, fed_sum = run_fedsim(sc)
            rt, ref_sum = reference_loop(sc)
        fed_t.append(ft)
        ref_t.append(rt)
        ratios.append(ft / rt)
    same = fed_sum["model_sha256"] == ref_sum["model_sha256"]
    return {
        "overhead_inproc": {
            "value": statistics.median(ratios),
            "target": f"<= {TARGET}",
            "raw": {
                "fedsim_s": fed_t,
                "reference_s": ref_t,
                "pair_ratios": ratios,
                "fedsim_rounds_wall_s": fed_sum["rounds_wall_s"],
                "rounds": sc.rounds,
                "local_epochs": sc.train.local_epochs,
                "local_steps": sc.train.local_steps,
                "torch_threads": sc.runtime.torch_threads,
                "same_model_sha256": same,
                "fedsim_final_accuracy": fed_sum["final_accuracy"],
                "reference_final_accuracy": ref_sum["final_accuracy"],
                "note": None if same else "reference loop and fedsim ended with different models",
            },
        }
    }


def _describe(raw: dict) -> str:
    return (
        f"fedsim {raw['fedsim_s']} s, reference {raw['reference_s']} s, "
        f"same model: {raw['same_model_sha256']}"
    )


def main(argv: list[str] | None = None) -> int:
    from run import standalone

    return standalone(__doc__, run, _describe, argv)


if __name__ == "__main__":
    sys.exit(main())
