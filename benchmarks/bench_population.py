"""population_10k_rss: peak resident memory of a 10,000-client population with error feedback.

10,000 clients (synthetic 28x28 data, IID, 2 samples each), the FedAvg CNN (1.66M
parameters), 10 rounds of 100 clients, `ef(topk:0.01)` on the uplink so every client that
has taken part keeps a 6.65 MB error-feedback residual, one local step per round, the
evaluation once at the end. It runs through the Coordinator in process, in a fresh child
process whose peak RSS (VmHWM from /proc/self/status, and getrusage's ru_maxrss) is the
figure. Client state goes to the disk-backed store (`ClientStateStore(disk=True)`): about
1,000 residuals, 6.5 GB, would not fit in memory.

A smaller population is also run with the in-memory and with the disk-backed store, and
the two runs must end with the same model hash (`raw.disk_equals_memory`).

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
FULL = {"clients": 10_000, "rounds": 10, "per_round": 100}
QUICK = {"clients": 200, "rounds": 2, "per_round": 10}
CHECK = {"clients": 300, "rounds": 3, "per_round": 30}  # memory vs disk, full mode


def scenario_doc(clients: int, rounds: int, per_round: int) -> dict:
    return {
        "name": "population",
        "seed": 0,
        "rounds": rounds,
        "data": {
            "dataset": "synthetic",
            "partition": "iid",
            "synthetic": {"shape": [1, 28, 28], "train_size": 2 * clients, "test_size": 500},
        },
        "model": {"name": "cnn"},
        "clients": {"count": clients, "per_round": per_round},
        "train": {"local_steps": 1, "batch_size": 2},
        "codec": {"uplink": "ef(topk:0.01)", "downlink": "fp32"},
        "eval": {"every": rounds},
    }


def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def child(clients: int, rounds: int, per_round: int, store: str) -> dict:
    """Runs in the measured process: one Coordinator run, then its memory high-water mark."""
    from fedsim.runtime import coordinator as coord_mod
    from fedsim.runtime.state import ClientStateStore
    from fedsim.scenario import validate_doc

    made: list[ClientStateStore] = []

    def make_store() -> ClientStateStore:
        s = ClientStateStore(disk=(store == "disk"))
        made.append(s)
        return s

    coord_mod.ClientStateStore = make_store  # the coordinator takes no store option yet
    sc = validate_doc(scenario_doc(clients, rounds, per_round))
    baseline = _proc_status_kib("VmRSS")
    with tempfile.TemporaryDirectory(prefix="fedsim-pop-") as out:
        t0 = time.perf_counter()
        summary = coord_mod.Coordinator(sc, Path(out) / "run").run()
        wall = time.perf_counter() - t0
    st = made[0]
    res = {
        "vm_hwm_kib": _proc_status_kib("VmHWM"),
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "rss_after_imports_kib": baseline,
        "wall_s": wall,
        "clients_with_state": len(st.clients()),
        "state_bytes": st.nbytes(),
        "model_sha256": summary["model_sha256"],
        "model_params": summary["model_params"],
        "final_accuracy": summary["final_accuracy"],
        "bytes_up_total": summary["bytes_up_total"],
        "store": store,
    }
    st.close()
    return res


def _run_child(cfg: dict, store: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", store]
    cmd += [str(cfg["clients"]), str(cfg["rounds"]), str(cfg["per_round"])]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"population child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> dict[str, dict]:
    cfg = QUICK if quick else FULL
    main_run = _run_child(cfg, "disk")
    check_cfg = QUICK if quick else CHECK
    disk = main_run if quick else _run_child(check_cfg, "disk")
    mem = _run_child(check_cfg, "memory")
    gib = main_run["vm_hwm_kib"] / 2**20
    return {
        "population_10k_rss": {
            "value": gib,
            "target": f"<= {TARGET_GIB}",
            "raw": {
                **{k: v for k, v in cfg.items()},
                "unit": "GiB",
                **main_run,
                "ru_maxrss_gib": main_run["ru_maxrss_kib"] / 2**20,
                "state_gib_on_disk": main_run["state_bytes"] / 2**30,
                "check": {**check_cfg, "memory_sha256": mem["model_sha256"]},
                "disk_equals_memory": disk["model_sha256"] == mem["model_sha256"],
                "memory_store_hwm_gib_at_check_size": mem["vm_hwm_kib"] / 2**20,
                "disk_store_hwm_gib_at_check_size": disk["vm_hwm_kib"] / 2**20,
            },
        }
    }


def _describe(raw: dict) -> str:
    return (
        f"GiB; {raw['clients']} clients, {raw['clients_with_state']} with state "
        f"({raw['state_gib_on_disk']:.2f} GiB on disk), {raw['wall_s']:.0f} s; "
        f"disk == memory: {raw['disk_equals_memory']}"
    )


def _child_arg(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--child", nargs=4, metavar=("STORE", "N", "R", "K"), help=argparse.SUPPRESS)


def _child(args: argparse.Namespace) -> int | None:
    if not args.child:
        return None
    store, n, r, k = args.child
    print(json.dumps(child(int(n), int(r), int(k), store)))
    return 0


def main(argv: list[str] | None = None) -> int:
    from run import standalone

    return standalone(__doc__, run, _describe, argv, hidden=_child, extra=_child_arg)


if __name__ == "__main__":
    sys.exit(main())
