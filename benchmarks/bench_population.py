"""population_100k_rss: peak resident memory of a 100,000-client population with error feedback.

100,000 clients (synthetic 28x28 data, IID, 2 samples each), the narrow CNN
(`model.name = "cnn"`, `model.args = {channels = [8, 16], hidden = 64}`: 54,314 parameters),
10 rounds of 1,000 clients, `ef(topk:0.01)` on the uplink so every client that has taken
part keeps a 217 KB error-feedback residual (about 10,000 of them, 2 GB, at the end), one
local step per round, the evaluation once at the end, a checkpoint after round 5 and after
round 10 (written one client at a time). It runs through the Coordinator in process, in a
fresh child process: the figure is the child's peak RSS (VmHWM from /proc/self/status; the
child starts no process of its own, so it is the whole process tree; the parent also
reports getrusage's RUSAGE_CHILDREN maximum). Client state goes to the disk-backed store
(`runtime.state_store = "disk"`). Selection draws 1,000 of 100,000 without a pass over the
population (`network/selection.py`): `raw.availability_queries` counts what it asked.

After the measurement the same child runs a smaller population (300 clients, 3 rounds of
30) with the in-memory, the disk and the spilling store: all must end with the same model
hash (`raw.disk_equals_memory`, `raw.spill_equals_memory`).

    python benchmarks/bench_population.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_GIB = 2.0  # at most
FULL = {"clients": 100_000, "rounds": 10, "per_round": 1000, "checkpoint_every": 5}
QUICK = {"clients": 2_000, "rounds": 2, "per_round": 20, "checkpoint_every": 1}
CHECK = {"clients": 300, "rounds": 3, "per_round": 30, "checkpoint_every": 0}
STORES = {  # the runtime keys of each store compared on the CHECK population
    "memory": {"state_store": "memory"},
    "disk": {"state_store": "disk"},
    "spill": {"state_store": "spill", "state_memory": "1MB"},
}


def scenario_doc(
    clients: int, rounds: int, per_round: int, checkpoint_every: int, store: str = "disk"
) -> dict:
    return {
        "name": "population",
        "seed": 0,
        "rounds": rounds,
        "data": {
            "dataset": "synthetic",
            "partition": "iid",
            "synthetic": {"shape": [1, 28, 28], "train_size": 2 * clients, "test_size": 500},
        },
        "model": {"name": "cnn", "args": {"channels": [8, 16], "hidden": 64}},
        "clients": {"count": clients, "per_round": per_round},
        "train": {"local_steps": 1, "batch_size": 2},
        "codec": {"uplink": "ef(topk:0.01)", "downlink": "fp32"},
        "eval": {"every": rounds},
        "runtime": {**STORES[store], "checkpoint_every": checkpoint_every},
    }


def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def _one_run(coord_mod, scenario) -> tuple[dict, float, object, int]:
    """(summary, wall seconds, the client store, availability queries made)."""
    from fedsim.network import availability

    import fedsim.runtime.server as server_mod

    made: list = []
    real = server_mod.ClientStateStore

    def make_store(*args, **kwargs):
        s = real(*args, **kwargs)
        s.release = s.close  # the coordinator closes its stores at the end; keep it to read
        s.close = lambda: None
        made.append(s)
        return s

    queries = [0]
    is_online = availability.AlwaysOn.is_online

    def counted(self, device, t):
        queries[0] += 1
        return is_online(self, device, t)

    server_mod.ClientStateStore = make_store  # the engine's Server owns the stores
    availability.AlwaysOn.is_online = counted
    try:
        with tempfile.TemporaryDirectory(prefix="fedsim-pop-") as out:
            t0 = time.perf_counter()
            summary = coord_mod.Coordinator(scenario, Path(out) / "run").run()
            wall = time.perf_counter() - t0
    finally:
        server_mod.ClientStateStore = real
        availability.AlwaysOn.is_online = is_online
    for extra in made[1:]:  # the downlink reference store (unused with an fp32 downlink)
        extra.release()
    return summary, wall, made[0], queries[0]


def child(cfg: dict, check: dict) -> dict:
    """Runs in the measured process: the Coordinator run and its memory high-water mark, then
    (not measured) the smaller `check` population with each store."""
    from fedsim.runtime import coordinator as coord_mod
    from fedsim.scenario import validate_doc

    baseline = _proc_status_kib("VmRSS")
    summary, wall, st, queries = _one_run(coord_mod, validate_doc(scenario_doc(**cfg)))
    res = {
        "vm_hwm_kib": _proc_status_kib("VmHWM"),
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "rss_after_imports_kib": baseline,
        "wall_s": wall,
        "clients_with_state": len(st.clients()),
        "state_bytes": st.nbytes(),
        "availability_queries": queries,
        "model_sha256": summary["model_sha256"],
        "model_params": summary["model_params"],
        "final_accuracy": summary["final_accuracy"],
        "bytes_up_total": summary["bytes_up_total"],
        "store": "disk",
    }
    st.release()
    for mode in STORES:
        s, _, st, _ = _one_run(coord_mod, validate_doc(scenario_doc(**check, store=mode)))
        res[f"check_{mode}_sha256"] = s["model_sha256"]
        st.release()
    return res


def _run_child(cfg: dict, check: dict) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps([cfg, check])]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"population child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["children_maxrss_kib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return res


def run(quick: bool = False) -> dict[str, dict]:
    cfg, check = (QUICK, QUICK) if quick else (FULL, CHECK)
    main_run = _run_child(cfg, check)
    gib = main_run["vm_hwm_kib"] / 2**20
    mem = main_run["check_memory_sha256"]
    return {
        "population_100k_rss": {
            "value": gib,
            "target": f"<= {TARGET_GIB}",
            "raw": {
                **cfg,
                "unit": "GiB",
                "model": "cnn channels=[8, 16] hidden=64",
                **main_run,
                "ru_maxrss_gib": main_run["ru_maxrss_kib"] / 2**20,
                "state_gib_on_disk": main_run["state_bytes"] / 2**30,
                "check": check,
                "disk_equals_memory": main_run["check_disk_sha256"] == mem,
                "spill_equals_memory": main_run["check_spill_sha256"] == mem,
            },
        }
    }


def _describe(raw: dict) -> str:
    return (
        f"GiB; {raw['clients']} clients, {raw['clients_with_state']} with state "
        f"({raw['state_gib_on_disk']:.2f} GiB on disk), {raw['availability_queries']} "
        f"availability queries, {raw['wall_s']:.0f} s; disk == memory: "
        f"{raw['disk_equals_memory']}, spill == memory: {raw['spill_equals_memory']}"
    )


def _child_arg(ap) -> None:
    ap.add_argument("--child", metavar="JSON", help=argparse.SUPPRESS)


def _child(args) -> int | None:
    if args.child:
        cfg, check = json.loads(args.child)
        print(json.dumps(child(cfg, check)))
        return 0
    return None


def main(argv: list[str] | None = None) -> int:
    from run import standalone

    return standalone(__doc__, run, _describe, argv, hidden=_child, extra=_child_arg)


if __name__ == "__main__":
    sys.exit(main())
