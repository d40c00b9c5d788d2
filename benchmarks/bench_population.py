"""population_10k_rss: peak resident memory of a 10,000-client population with error feedback.

10,000 clients (synthetic 28x28 data, IID, 2 samples each), the FedAvg CNN (1.66M
parameters), 10 rounds of 100 clients, `ef(topk:0.01)` on the uplink so every client that
has taken part keeps a 6.65 MB error-feedback residual, one local step per round, the
evaluation once at the end. It runs through the Coordinator in process, in a fresh child
process whose peak RSS (VmHWM from /proc/self/status, and getrusage's ru_maxrss) is the
figure. Client state goes to the disk-backed store (`ClientStateStore(disk=True)`): about
1,000 residuals, 6.5 GB, would not fit in memory.

After the measurement the same child runs a smaller population (300 clients, 3 rounds of
30) with the in-memory and with the disk-backed store: both must end with the same model
hash (`raw.disk_equals_memory`). `--lazy-decode` is a what-if, not the figure: the same
run with accepted updates decoded one tensor at a time as the aggregation reads them.

    python benchmarks/bench_population.py [--quick] [--json PATH] [--lazy-decode]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
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


class LazyTensors(Mapping):
    """What-if (`--lazy-decode`): accepted updates decoded one tensor at a time, when the
    aggregation reads them, instead of all K dense updates held at once."""

    def __init__(self, records):
        self._records = {r.name: r for r in records}

    def __getitem__(self, name):
        from fedsim.codecs.pipeline import codec_for_record

        rec = self._records[name]
        return codec_for_record(rec).decode(rec)

    def __iter__(self):
        return iter(self._records)

    def __len__(self):
        return len(self._records)


def _one_run(coord_mod, scenario, store: str) -> tuple[dict, float, object]:
    from fedsim.runtime.state import ClientStateStore

    made: list[ClientStateStore] = []

    def make_store(*_args, **_kwargs) -> ClientStateStore:
        s = ClientStateStore(disk=(store == "disk"))
        s.release = s.close  # the coordinator closes its store at the end; keep it to read
        s.close = lambda: None
        made.append(s)
        return s

    # the scenario key runtime.state_store selects this too; replaced here so the store can
    # be read after the run
    import fedsim.runtime.server as server_mod

    server_mod.ClientStateStore = make_store  # the engine's Server owns the stores
    with tempfile.TemporaryDirectory(prefix="fedsim-pop-") as out:
        t0 = time.perf_counter()
        summary = coord_mod.Coordinator(scenario, Path(out) / "run").run()
        wall = time.perf_counter() - t0
    return summary, wall, made[0]


def child(cfg: dict, store: str, *, lazy: bool = False, check: dict | None = None) -> dict:
    """Runs in the measured process: the Coordinator run and its memory high-water mark, then
    (not measured) the smaller `check` population with the memory and the disk store."""
    from fedsim.runtime import coordinator as coord_mod
    from fedsim.scenario import validate_doc

    if lazy:
        coord_mod.decode_tensors = LazyTensors
    baseline = _proc_status_kib("VmRSS")
    summary, wall, st = _one_run(coord_mod, validate_doc(scenario_doc(**cfg)), store)
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
        "lazy_decode": lazy,
    }
    st.release()
    if check:
        for mode in ("memory", "disk"):
            s, _, st = _one_run(coord_mod, validate_doc(scenario_doc(**check)), mode)
            res[f"check_{mode}_sha256"] = s["model_sha256"]
            st.release()
    return res


def _run_child(cfg: dict, check: dict) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps([cfg, check])]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"population child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> dict[str, dict]:
    cfg, check = (QUICK, QUICK) if quick else (FULL, CHECK)
    main_run = _run_child(cfg, check)
    gib = main_run["vm_hwm_kib"] / 2**20
    return {
        "population_10k_rss": {
            "value": gib,
            "target": f"<= {TARGET_GIB}",
            "raw": {
                **cfg,
                "unit": "GiB",
                **main_run,
                "ru_maxrss_gib": main_run["ru_maxrss_kib"] / 2**20,
                "state_gib_on_disk": main_run["state_bytes"] / 2**30,
                "check": check,
                "disk_equals_memory": main_run["check_disk_sha256"]
                == main_run["check_memory_sha256"],
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
    ap.add_argument("--child", metavar="JSON", help=argparse.SUPPRESS)
    ap.add_argument(
        "--lazy-decode",
        action="store_true",
        help="what-if: decode accepted updates lazily, print the child's JSON (not the figure)",
    )


def _child(args: argparse.Namespace) -> int | None:
    if args.child:
        cfg, check = json.loads(args.child)
        print(json.dumps(child(cfg, "disk", check=check)))
        return 0
    if args.lazy_decode:
        cfg = QUICK if args.quick else FULL
        print(json.dumps(child(cfg, "disk", lazy=True)))
        return 0
    return None


def main(argv: list[str] | None = None) -> int:
    from run import standalone

    return standalone(__doc__, run, _describe, argv, hidden=_child, extra=_child_arg)


if __name__ == "__main__":
    sys.exit(main())
