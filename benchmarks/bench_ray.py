"""ray_vs_zmq_1000: a 1,000-client population on a local Ray instance against the ZeroMQ
workers on the same machine.

1,000 clients (synthetic 28x28 data, IID, 20 samples each), a tiny MLP (784-32-10), 5
rounds of 50 clients, one local epoch. The same scenario runs three times, each in a fresh
child process: in process (the reference), with 2 ZeroMQ worker processes over ipc, and
with 2 Ray actors on a local Ray instance of 2 CPUs that the run starts and shuts down. All
three must end with the same model hash. Reported per mode: the end-to-end wall time (child
process start to exit: imports, data, workers/Ray start-up, rounds, shutdown) and the sum of
the rounds' own wall times (metrics.jsonl) from round 2 on, i.e. the steady state without
start-up.

    python benchmarks/bench_ray.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FULL = {"clients": 1000, "per_round": 50, "rounds": 5}
QUICK = {"clients": 100, "per_round": 10, "rounds": 3}
WORKERS = 2

SCENARIO = """
name = "population-ray"
seed = 0
rounds = {rounds}
[data]
dataset = "synthetic"
partition = "iid"
[data.synthetic]
shape = [1, 28, 28]
train_size = {train}
test_size = 1000
[model]
name = "mlp"
args = {{ hidden = [32] }}
[clients]
count = {clients}
per_round = {per_round}
[train]
local_epochs = 1
batch_size = 10
[runtime]
torch_threads = 1
heartbeat_interval = 0.2
"""

OVERRIDES = {
    "inproc": [],
    "zmq": ['runtime.transport="ipc"', f"runtime.workers={WORKERS}"],
    "ray": [f"runtime.workers={WORKERS}"],  # RayExecutor: one actor per runtime.workers
}

CHILD = """
import json, sys, time
t0 = time.perf_counter()
from fedsim.runtime import coordinator
from fedsim.scenario import load_scenario
mode, scen, out, overrides = sys.argv[1:5]
sc = load_scenario(scen, json.loads(overrides))
if mode == "ray":
    from fedsim.runtime.executors.ray import RayExecutor

    def make(s, runner_factory, *, scenario_toml, on_event):
        return RayExecutor(s, scenario_toml, on_event=on_event)

    coordinator.make_executor = make
s = coordinator.Coordinator(sc, out).run()
print(json.dumps({"sha": s["model_sha256"], "child_s": time.perf_counter() - t0}))
"""


def run_mode(mode: str, scen: Path, out: Path) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(scen), str(out), json.dumps(OVERRIDES[mode])],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    rounds = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {
        "wall_s": round(wall, 2),
        "rounds_s": [round(r["wall_time"], 3) for r in rounds],
        "steady_s": round(sum(r["wall_time"] for r in rounds[1:]), 2),
        "sha": child["sha"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--modes", default="inproc,zmq,ray")
    args = ap.parse_args()
    cfg = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="fedsim-bench-ray-") as tmp:
        scen = Path(tmp) / "population.toml"
        scen.write_text(SCENARIO.format(train=20 * cfg["clients"], **cfg))
        res = {m: run_mode(m, scen, Path(tmp) / m) for m in args.modes.split(",")}
    shas = {r["sha"] for r in res.values()}
    report = {
        "benchmark": "ray_vs_zmq_1000",
        "config": {**cfg, "workers": WORKERS, "model": "mlp 784-32-10", "data": "synthetic"},
        "identical_model": len(shas) == 1,
        "modes": res,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if len(shas) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
