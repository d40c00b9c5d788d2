"""GPU check (PERFORMANCE.md, "GPU"): fedsim on a GPU against a bare GPU PyTorch loop.

Two workloads, each run twice through fedsim in process with `runtime.device = "cuda"`
(the model hash must be identical: deterministic algorithms are on) and once as a bare loop
doing the same local training and evaluations on the same GPU (bench_overhead's reference
loop, moved to the GPU):

- quickstart: mnist5k, McMahan CNN, 20 clients, 5 per round, 1 local epoch, 10 rounds;
- resnet18: a CIFAR-10-shaped run, synthetic data of shape [3, 32, 32] (10 classes, 5,000
  samples), ResNet-18, 10 clients, 5 per round, 20 local steps, 3 rounds.

The figure is fedsim's wall time over the bare loop's (target <= 1.1). Absolute, only on a
GPU machine; on a machine without CUDA it says so and exits 0.

    python benchmarks/gpu_check.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TARGET = 1.1  # fedsim over the bare GPU loop, at most

RESNET = [
    "data.dataset=synthetic",
    "data.synthetic.shape=[3,32,32]",
    "data.synthetic.train_size=5000",
    "data.synthetic.test_size=1000",
    "data.partition=iid",
    "model.name=resnet18",
    "model.args={}",
    "clients.count=10",
    "clients.per_round=5",
    "train.local_steps=20",
    "train.batch_size=32",
    "rounds=3",
]


def check(name: str, sc) -> dict:
    from bench_overhead import reference_loop, run_fedsim

    reference_loop(sc, "cuda")  # warm-up: CUDA context, cuDNN autotuning, dataset cache
    ref_s, ref = reference_loop(sc, "cuda")
    walls, hashes = [], []
    for _ in range(2):
        wall, summary = run_fedsim(sc)
        walls.append(wall)
        hashes.append(summary["model_sha256"])
    ratio = min(walls) / ref_s
    return {
        "value": ratio,
        "target": f"<= {TARGET}",
        "raw": {
            "workload": name,
            "gpu": torch.cuda.get_device_name(0),
            "fedsim_s": walls,
            "bare_gpu_loop_s": ref_s,
            "hash_stable": hashes[0] == hashes[1],
            "hashes": hashes,
            "bare_loop_sha256": ref["model_sha256"],
        },
    }


def run(quick: bool = False) -> dict[str, dict]:
    from bench_overhead import quickstart_scenario

    device = ["runtime.device=cuda"]
    quickstart = quickstart_scenario(quick, *device)
    resnet = quickstart_scenario(quick, *RESNET, *device, *(["rounds=1"] if quick else []))
    return {
        "gpu_quickstart_vs_bare": check("quickstart", quickstart),
        "gpu_resnet18_vs_bare": check("resnet18 [3,32,32]", resnet),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA GPU on this machine (torch.cuda.is_available() is False); "
            "nothing measured"
        )
        return 0
    out = run(args.quick)
    for fig, r in out.items():
        raw = r["raw"]
        print(
            f"{fig}: {r['value']:.3f} (target {r['target']}) on {raw['gpu']}; fedsim "
            f"{[round(w, 2) for w in raw['fedsim_s']]} s, bare loop {raw['bare_gpu_loop_s']:.2f} s, "
            f"hash stable: {raw['hash_stable']}"
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0 if all(r["raw"]["hash_stable"] for r in out.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
