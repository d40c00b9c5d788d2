"""workers2_efficiency: parallel efficiency of 2 worker processes over ipc.

The quick-start workload (mnist5k, CNN, 20 Dirichlet clients, 1 local epoch) with 10
clients per round, so a round's tasks can split over two workers, and 1 torch thread
everywhere. The same scenario runs once in process and once with 2 worker processes over
ipc; efficiency = in-process time / (2 x 2-worker time), 1.0 being perfect scaling.

Times are the rounds' own wall times (metrics.jsonl) from round 2 on: round 1 of the
worker run includes starting the worker processes (importing torch, building the data), a
one-off cost reported separately as `startup_s`, with the end-to-end efficiency beside it.
`schedule_bound` is the best efficiency fedsim's dispatch order allows for the measured
per-task times (tasks handed out in client-id order to whichever worker is free): clients
have different data sizes, so the two workers cannot always finish together.
`task_slowdown` is the time the same tasks took inside the two workers over the time they
took in process: above 1 the workers were competing for CPU (with each other, with the
coordinator, or with other work on the machine) rather than waiting on fedsim.
`coordinator_serial_s` is the in-process rounds' time outside the tasks: the coordinator's
own work (evaluating the global model every round above all), which no worker can take
over; `amdahl_bound` is the efficiency it and `schedule_bound` leave possible.
`machine_ceiling` is what the machine itself allows: a fixed 1-thread torch matmul loop
alone, over the same loop in two processes at once (1.0 means two full cores).

    python benchmarks/bench_workers.py [--quick] [--json PATH]
"""

from __future__ import annotations

import heapq
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_overhead import quickstart_scenario  # noqa: E402

from fedsim.runtime.coordinator import Coordinator  # noqa: E402

TARGET = 0.85  # at least
WORKERS = 2


def _scenario(quick: bool, *extra: str):
    rounds = "rounds=3" if quick else "rounds=6"
    per_round = "clients.per_round=4" if quick else "clients.per_round=10"
    return quickstart_scenario(quick, rounds, per_round, "runtime.torch_threads=1", *extra)


def _timed_run(sc) -> dict:
    with tempfile.TemporaryDirectory(prefix="fedsim-bench-") as out:
        t0 = time.perf_counter()
        Coordinator(sc, Path(out) / "run").run()
        wall = time.perf_counter() - t0
        run = Path(out) / "run"
        rounds = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        traffic = [json.loads(x) for x in (run / "traffic.jsonl").read_text().splitlines()]
        events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    tasks: dict[int, list[float]] = {}
    for row in traffic:
        if row["kind"] == "update":
            busy = sum(row.get(k, 0.0) for k in ("wall_decode_s", "wall_train_s", "wall_encode_s"))
            tasks.setdefault(row["round"], []).append(busy)
    # a round's real duration = from its start to the next round's start (events.jsonl marks
    # each start; the last round ends with the run's "end" event). A row's own `wall_time`
    # would count the evaluation twice: with worker processes the coordinator evaluates
    # round r in a thread while round r+1 trains.
    marks = [e["wall_time"] for e in events if e["event"] == "round_start"]
    marks.append(next(e["wall_time"] for e in events if e["event"] == "end"))
    rounds_s = [b - a for a, b in zip(marks, marks[1:], strict=False)]
    return {
        "wall_s": wall,
        "rounds_s": rounds_s,
        "row_wall_time_s": [r["wall_time"] for r in rounds],
        "task_s": tasks,
    }


def schedule_bound(task_s: dict[int, list[float]], workers: int, first: int = 2) -> float:
    """Efficiency of greedy in-order dispatch of the measured tasks onto `workers` workers."""
    busy = makespan = 0.0
    for rnd, times in task_s.items():
        if rnd < first:
            continue
        free = [0.0] * workers
        for t in times:  # traffic rows are in client-id order, as tasks are dispatched
            heapq.heappush(free, heapq.heappop(free) + t)
        busy += sum(times)
        makespan += max(free)
    return busy / (workers * makespan) if makespan else float("nan")


_SPIN = """
import sys, time, torch
torch.set_num_threads(1)
a = torch.randn(256, 256)
start = float(sys.argv[1])
while time.time() < start:
    time.sleep(0.001)
t = time.perf_counter()
for _ in range(int(sys.argv[2])):
    a @ a
print(time.perf_counter() - t)
"""


def machine_ceiling(iters: int = 3000) -> dict:
    """What two 1-thread torch processes get from this machine: the time of a fixed matmul
    loop alone over its time when two run at once (1.0: two full cores; 0.5: one core's
    worth shared, e.g. SMT siblings, a CPU quota, or other work)."""
    import subprocess

    def spin(n_procs: int) -> float:
        start = time.time() + 4.0  # after torch has been imported
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _SPIN, str(start), str(iters)],
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
            for _ in range(n_procs)
        ]
        return max(float(p.communicate()[0]) for p in procs)

    alone, pair = spin(1), spin(2)
    return {"alone_s": alone, "pair_s": pair, "ceiling": alone / pair}


def _busy(task_s: dict[int, list[float]], first: int = 2) -> float:
    """Time spent inside tasks (decode, train, encode) from round `first` on."""
    return sum(sum(t) for rnd, t in task_s.items() if rnd >= first)


def run(quick: bool = False) -> dict[str, dict]:
    ceiling = machine_ceiling(300 if quick else 3000)
    inproc = _timed_run(_scenario(quick))
    multi = _timed_run(_scenario(quick, 'runtime.transport="ipc"', f"runtime.workers={WORKERS}"))
    # steady state: rounds 2..N-1 (round 1 holds worker start-up, the last one the shutdown
    # of the worker processes before the run's "end" mark)
    steady_in = sum(inproc["rounds_s"][1:-1])
    steady_multi = sum(multi["rounds_s"][1:-1])
    startup = multi["rounds_s"][0] - inproc["rounds_s"][0]
    last = len(inproc["rounds_s"])
    tasks = _busy({r: t for r, t in inproc["task_s"].items() if r < last})
    serial = steady_in - tasks  # the coordinator's own work per round (evaluation above all)
    bound = schedule_bound(inproc["task_s"], WORKERS)
    return {
        "workers2_efficiency": {
            "value": steady_in / (WORKERS * steady_multi),
            "target": f">= {TARGET}",
            "raw": {
                "inproc_rounds_s": inproc["rounds_s"],
                "workers2_rounds_s": multi["rounds_s"],
                "inproc_wall_s": inproc["wall_s"],
                "workers2_wall_s": multi["wall_s"],
                "startup_s": startup,
                "end_to_end_efficiency": inproc["wall_s"] / (WORKERS * multi["wall_s"]),
                "schedule_bound": bound,
                "inproc_task_s": tasks,
                "workers2_task_s": _busy({r: t for r, t in multi["task_s"].items() if r < last}),
                "task_slowdown": _busy({r: t for r, t in multi["task_s"].items() if r < last})
                / tasks,
                "coordinator_serial_s": serial,
                "amdahl_bound": steady_in / (WORKERS * (serial + tasks / (WORKERS * bound))),
                "machine_ceiling": ceiling["ceiling"],
                "machine_ceiling_s": ceiling,
                "rounds_counted": len(inproc["rounds_s"]) - 2,
                "per_round": 4 if quick else 10,
                "torch_threads": 1,
                "transport": "ipc",
            },
        }
    }


def _describe(raw: dict) -> str:
    return (
        f"schedule bound {raw['schedule_bound']:.3f}, end to end "
        f"{raw['end_to_end_efficiency']:.3f}, worker start-up {raw['startup_s']:.1f} s, "
        f"task slowdown in workers {raw['task_slowdown']:.2f}, Amdahl bound "
        f"{raw['amdahl_bound']:.3f} ({raw['coordinator_serial_s']:.1f} s serial), "
        f"machine ceiling {raw['machine_ceiling']:.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    from run import standalone

    return standalone(__doc__, run, _describe, argv)


if __name__ == "__main__":
    sys.exit(main())
