"""batched_vs_sequential: a round's clients trained together over the same clients trained
one after another, whole runs in process.

Two workloads, each run with `runtime.batch_clients = K` (every client of a round in one
group) and with 1, in the same process and torch thread count, in rotating order (each
arm first once in three):

- quickstart: mnist5k, CNN, 20 clients, 5 per round, 1 local epoch, 10 rounds;
- per_round_50: the same with 100 clients, 50 per round, 3 rounds.

Three arms per workload: sequential (`batch_clients = 1`), batched with the default kernels
(`runtime.batch_kernels = "auto"`: per-client kernels on the CPU) and batched with `vmap`
(one vectorised computation, the GPU's default). The figure is the worse (larger) of the two
workloads' medians of batched (default kernels) / sequential wall time (target <= 0.5); the
vmap ratios are reported beside it. On the CPU the default kernels give every client its
sequential update bit for bit, so those runs' hashes equal the sequential ones (checked).

`--profile` instead prints where one local step's time goes (per client, batch 20, the
quick start's CNN): wall time, FLOPs (of the sequential step, counted by FlopCounterMode)
and achieved GFLOP/s of the sequential step and of a group of 5 and 50 clients with each
kernel choice, and the shares of wall time in convolution/matrix kernels, in other torch
operators, and outside any torch operator (Python, numpy encoding and decoding, dispatch);
beside them the machine's float32 matrix-product rate on the same threads (a 2048^3
`torch.mm`, best of 5: what no batching can exceed) and each arm's share of it.

    python benchmarks/bench_batched.py [--quick] [--json PATH] [--profile]
"""

from __future__ import annotations

import statistics
import time

from bench_overhead import quickstart_scenario, run_fedsim

TARGET = 0.5  # at most

WORKLOADS = {
    "quickstart": (5, []),
    "per_round_50": (50, ["clients.count=100", "clients.per_round=50", "rounds=3"]),
}
ARMS = ("sequential", "batched", "batched_vmap")


def measure(quick: bool, per_round: int, overrides: list[str]) -> dict:
    extra = ["rounds=2"] if quick else []
    scs = {
        "sequential": quickstart_scenario(quick, *overrides, *extra, "runtime.batch_clients=1"),
        "batched": quickstart_scenario(
            quick, *overrides, *extra, f"runtime.batch_clients={per_round}"
        ),
        "batched_vmap": quickstart_scenario(
            quick,
            *overrides,
            *extra,
            f"runtime.batch_clients={per_round}",
            "runtime.batch_kernels=vmap",
        ),
    }
    run_fedsim(scs["sequential"])  # warm-up: dataset cache, allocator
    times: dict[str, list[float]] = {a: [] for a in ARMS}
    hashes: dict[str, set[str]] = {a: set() for a in ARMS}
    for i in range(1 if quick else 3):
        for arm in ARMS[i % 3 :] + ARMS[: i % 3]:  # each arm first once
            wall, summary = run_fedsim(scs[arm])
            times[arm].append(wall)
            hashes[arm].add(summary["model_sha256"])
    ratio = [b / s for b, s in zip(times["batched"], times["sequential"], strict=True)]
    ratio_vmap = [b / s for b, s in zip(times["batched_vmap"], times["sequential"], strict=True)]
    return {
        "ratio": statistics.median(ratio),
        "ratios": ratio,
        "ratio_vmap": statistics.median(ratio_vmap),
        "ratios_vmap": ratio_vmap,
        **{f"{arm}_s": [round(t, 2) for t in times[arm]] for arm in ARMS},
        "batched_hash_is_sequential": hashes["batched"] == hashes["sequential"],
        "repeated_runs_one_hash": all(len(h) == 1 for h in hashes.values()),
        "batch_clients": per_round,
        "rounds": scs["sequential"].rounds,
        "torch_threads": scs["sequential"].runtime.torch_threads,
    }


def run(quick: bool = False) -> dict[str, dict]:
    raw = {name: measure(quick, k, ov) for name, (k, ov) in WORKLOADS.items()}
    return {
        "batched_vs_sequential": {
            "value": max(r["ratio"] for r in raw.values()),
            "target": f"<= {TARGET}",
            "raw": raw,
        }
    }


def _describe(raw: dict) -> str:
    return "; ".join(
        f"{name} {r['ratio']:.2f} (batched {r['batched_s']} s, sequential {r['sequential_s']} s,"
        f" vmap {r['ratio_vmap']:.2f}: {r['batched_vmap_s']} s)"
        for name, r in raw.items()
    )


# ---- where a step's time goes --------------------------------------------------------------

HEAVY = ("conv", "mm", "linear")  # the FLOPs: convolutions, (b)mm/addmm, linear


def step_profile(groups: tuple[int, ...] = (5, 50), steps: int = 4) -> list[dict]:
    """Rows of (arm, clients, ms per client-step, GFLOP per client-step, GFLOP/s, shares)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from fedsim.experiment import Experiment
    from fedsim.runtime.client import ClientRunner
    from fedsim.runtime.netbuild import build_network
    from fedsim.runtime.server import Server

    rows = []
    torch.set_num_threads(quickstart_scenario(False).runtime.torch_threads)  # the arms' threads
    peak = sgemm_gflops()
    print({"sgemm_gflop_per_s": round(peak, 1), "threads": torch.get_num_threads()}, flush=True)
    for n in groups:
        sc = quickstart_scenario(
            False,
            f"clients.count={max(20, 2 * n)}",
            f"clients.per_round={n}",
            f"runtime.batch_clients={n}",
            f"train.local_steps={steps}",
        )
        torch.set_num_threads(sc.runtime.torch_threads)
        srv = Server(sc, Experiment(sc), build_network(sc))
        tasks = [d.task for d in srv.dispatch(1, list(range(n)), 0)]
        runner = ClientRunner(sc, srv.experiment)
        for arm in ("sequential", "per_client", "vmap"):

            def fn(arm=arm, runner=runner, tasks=tasks):
                if arm == "sequential":
                    return [runner.run(t) for t in tasks]
                return runner.run_many(tasks, arm)

            fn()  # warm-up
            if arm == "sequential":  # the useful work; vmap's stacked kernels count otherwise
                with FlopCounterMode(display=False) as flops:
                    fn()
                gflop = flops.get_total_flops() / (n * steps) / 1e9
            walls = []
            for _ in range(3):
                t0 = time.perf_counter()
                fn()
                walls.append(time.perf_counter() - t0)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                t0 = time.perf_counter()
                fn()
                wall_prof = time.perf_counter() - t0
            heavy = other = 0.0
            for ev in prof.key_averages():
                if not ev.key.startswith("aten::"):
                    continue
                name = ev.key.removeprefix("aten::")
                if any(h in name for h in HEAVY):
                    heavy += ev.self_cpu_time_total
                else:
                    other += ev.self_cpu_time_total
            wall = min(walls)
            per = wall / (n * steps)
            rows.append(
                {
                    "arm": arm,
                    "clients": n,
                    "ms_per_client_step": round(per * 1e3, 2),
                    "gflop_per_client_step": round(gflop, 3),
                    "gflop_per_s": round(gflop / per, 1),
                    "of_sgemm": round(gflop / per / peak, 3),
                    "share_conv_matmul": round(heavy / 1e6 / wall_prof, 3),
                    "share_other_ops": round(other / 1e6 / wall_prof, 3),
                    "share_outside_ops": round(max(0.0, 1 - (heavy + other) / 1e6 / wall_prof), 3),
                }
            )
            print(rows[-1], flush=True)
    return rows


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """float32 GFLOP/s of one n x n x n matrix product on torch's current threads (best of
    `repeats`): the rate a compute-bound step could reach at most."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def _profile_flag(ap) -> None:
    ap.add_argument("--profile", action="store_true", help="where one step's time goes")


def _hidden(args) -> int | None:
    if not args.profile:
        return None
    import json
    from pathlib import Path

    rows = step_profile((5,) if args.quick else (5, 50), 2 if args.quick else 4)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    from run import standalone

    return standalone(__doc__, run, _describe, argv, hidden=_hidden, extra=_profile_flag)


if __name__ == "__main__":
    import sys

    sys.exit(main())
