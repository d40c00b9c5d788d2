"""flower_vs_fedsim: fedsim side by side with Flower's simulation engine and a bare loop.

The quick-start workload of issue 20 (mnist5k, the McMahan CNN, 20 Dirichlet(0.5) clients,
5 per round, 20 rounds, 1 local epoch, batch 32, SGD lr 0.05 momentum 0.9, evaluated every
round) runs four ways, each as a whole process of its own, alternating, `--repeats` times.
Every way may use the machine's two cores:

- fedsim: `Coordinator` in one process (every message encoded, the network model run),
  `runtime.torch_threads = 2` -- the figure (PERFORMANCE.md: fedsim in process);
- fedsim_workers: `Coordinator` with 2 ZeroMQ worker processes over ipc, one torch thread
  each -- the same parallelism as Flower's two one-CPU client actors (its model hash is the
  in-process one-thread hash);
- loop: the same federated training as a bare PyTorch loop with 2 torch threads
  (bench_overhead.reference_loop; it ends with the same model as fedsim);
- flower: `flwr.simulation.start_simulation` (Ray, one CPU per client actor, so two clients
  train at once), whose clients run the same local SGD on the same partitions
  (bench_overhead._train_client, one torch thread) and whose FedAvg takes the
  sample-weighted mean, with the same centralised evaluation. Flower picks its own clients
  each round, so its accuracies agree within noise rather than exactly.

Per run: wall time of the whole process (interpreter start to exit, Ray start and shutdown
included) and its memory: the peak over time of the summed PSS (proportional set size,
/proc/PID/smaps_rollup, so shared pages are not counted twice) of the process and all its
descendants (Ray's raylet, GCS and workers; fedsim's workers), sampled every 0.2 s. value =
median fedsim wall time / median Flower wall time (< 1.0: fedsim is faster);
`raw.workers_vs_flower` is the same for fedsim_workers.

Flower lives in its own virtual environment, never a fedsim dependency (benchmarks/README.md
says how to make it): its interpreter is `--flower-python`, or $FEDSIM_FLOWER_PYTHON, or this
one when it can import flwr; without one the figure is skipped with that message.

    python benchmarks/bench_flower.py [--quick] [--repeats N] [--flower-python PATH] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_overhead import _train_client, quickstart_scenario  # noqa: E402

FIGURE = "flower_vs_fedsim"
TARGET = 0.55  # fedsim / Flower wall time, at most (PERFORMANCE.md)
WORKLOAD = (
    "rounds=20",
    "train.batch_size=32",
    "train.momentum=0.9",
)  # PERFORMANCE.md; 1 epoch, eval every round
KINDS = ("fedsim", "fedsim_workers", "loop", "flower")
#: per kind, on WORKLOAD: how each way uses the two cores (Flower: two one-CPU actors)
SETUP = {
    "fedsim": ("runtime.torch_threads=2",),
    "fedsim_workers": ("runtime.transport=ipc", "runtime.workers=2"),
    "loop": ("runtime.torch_threads=2",),
    "flower": (),
}
REPEATS = 3


def workload(quick: bool, kind: str = "flower"):
    return quickstart_scenario(quick, *WORKLOAD, *SETUP[kind], *(("rounds=2",) if quick else ()))


def _skip(why: str) -> dict[str, dict]:
    return {FIGURE: {"value": None, "target": f"<= {TARGET}", "skipped": why, "raw": {}}}


def _flower_run(sc) -> tuple[float, list[float]]:
    import flwr as fl
    import numpy as np
    import torch
    from flwr.common import ndarrays_to_parameters

    from fedsim.eval.evaluate import evaluate as evaluate_model
    from fedsim.runtime import seeding
    from fedsim.runtime.build import load_data, make_model, make_partitions

    ds = load_data(sc)
    parts = make_partitions(sc, ds)
    model = make_model(sc, ds)
    names = sorted(k for k, v in model.state_dict().items() if v.is_floating_point())
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    x_all, y_all = torch.from_numpy(np.array(ds.x_train)), torch.from_numpy(np.array(ds.y_train))
    x_test, y_test = torch.from_numpy(np.array(ds.x_test)), torch.from_numpy(np.array(ds.y_test))
    t = sc.train
    opt_args = {"lr": t.lr, "momentum": t.momentum, "weight_decay": t.weight_decay}

    def set_weights(arrays):
        model.load_state_dict(initial)
        sd = model.state_dict()
        with torch.no_grad():
            for k, a in zip(names, arrays, strict=True):
                sd[k].copy_(torch.from_numpy(np.asarray(a, dtype=np.float32)))

    def get_weights():
        sd = model.state_dict()
        return [sd[k].numpy().astype(np.float32, copy=True) for k in names]

    class Client(fl.client.NumPyClient):
        def __init__(self, cid: int):
            self.cid = cid

        def get_parameters(self, config):
            return get_weights()

        def fit(self, parameters, config):
            torch.set_num_threads(sc.runtime.torch_threads)
            set_weights(parameters)
            rnd = int(config.get("server_round", 0))
            idx = torch.from_numpy(parts[self.cid])
            seed = seeding.derive_seed(sc.seed, seeding.TRAIN, rnd, self.cid)
            _train_client(
                model,
                opt_args,
                x_all[idx],
                y_all[idx],
                seed,
                t.batch_size,
                t.local_epochs,
                t.local_steps,
            )
            return get_weights(), len(idx), {}

    def client_fn(arg):
        if isinstance(arg, str):  # flwr < 1.8: the client id
            cid = int(arg)
        else:  # flwr >= 1.8: a Context
            cfg = getattr(arg, "node_config", {}) or {}
            cid = int(cfg.get("partition-id", getattr(arg, "node_id", 0))) % sc.clients.count
        client = Client(cid)
        return client.to_client() if hasattr(client, "to_client") else client

    accs: list[float] = []

    def evaluate(server_round, parameters, config):
        set_weights(parameters)
        # the same evaluation as fedsim's and the loop's: batches of eval.batch_size
        acc, loss = evaluate_model(model, x_test, y_test, sc.eval.batch_size)
        if server_round > 0:
            accs.append(acc)
        return loss, {"accuracy": acc}

    strategy = fl.server.strategy.FedAvg(
        fraction_fit=sc.clients.per_round / sc.clients.count,
        min_fit_clients=sc.clients.per_round,
        fraction_evaluate=0.0,
        min_evaluate_clients=0,
        min_available_clients=sc.clients.count,
        evaluate_fn=evaluate,
        on_fit_config_fn=lambda rnd: {"server_round": rnd},
        initial_parameters=ndarrays_to_parameters(get_weights()),
    )
    t0 = time.perf_counter()
    fl.simulation.start_simulation(
        client_fn=client_fn,
        num_clients=sc.clients.count,
        config=fl.server.ServerConfig(num_rounds=sc.rounds),
        strategy=strategy,
        client_resources={"num_cpus": 1},
        ray_init_args={"include_dashboard": False, "log_to_driver": False},
    )
    return time.perf_counter() - t0, accs


# ---- one run per process -------------------------------------------------------------------


def child(kind: str, quick: bool) -> dict:
    """Runs in the measured process: one whole run of `kind`; its accuracy curve."""
    sc = workload(quick, kind)
    if kind in ("fedsim", "fedsim_workers"):
        from bench_overhead import run_fedsim

        wall, summary = run_fedsim(sc)
        return {
            "run_s": wall,
            "accuracy": summary["accuracy_curve"],
            "model_sha256": summary.get("model_sha256"),
        }
    if kind == "loop":
        from bench_overhead import reference_loop

        wall, summary = reference_loop(sc)
        return {"run_s": wall, "accuracy": summary["accuracy_curve"]}
    import flwr

    wall, accs = _flower_run(sc)
    return {"run_s": wall, "accuracy": accs, "flwr": flwr.__version__}


def _tree_pss_kib(root: int) -> int:
    """Summed PSS (KiB) of `root` and every descendant alive now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def _measure(python: str, kind: str, quick: bool) -> dict:
    """One whole process: wall seconds, peak summed PSS of its tree, what it printed."""
    cmd = [python, str(Path(__file__).resolve()), "--child", kind]
    if quick:
        cmd.append("--quick")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env
    )
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_pss_kib(proc.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} run failed ({proc.returncode}): {err.decode()[-2000:]}")
    res = json.loads(out.decode().strip().splitlines()[-1])
    return {**res, "wall_s": wall, "peak_pss_gib": peak[0] / 2**20}


def flower_python(explicit: str | None = None) -> str | None:
    """The interpreter that runs Flower, or None."""
    for cand in (explicit, os.environ.get("FEDSIM_FLOWER_PYTHON")):
        if cand:
            return cand
    try:
        import flwr.simulation  # noqa: F401
    except Exception:
        return None
    return sys.executable


def run(quick: bool = False, repeats: int = REPEATS, python: str | None = None) -> dict:
    fl_python = flower_python(python)
    if fl_python is None:
        return _skip(
            "Flower is not installed: make its virtual environment (benchmarks/README.md) and "
            "set FEDSIM_FLOWER_PYTHON to its python, or pass --flower-python"
        )
    runs: dict[str, list[dict]] = {k: [] for k in KINDS}
    for r in range(1 if quick else repeats):
        order = KINDS if r % 2 == 0 else KINDS[::-1]  # alternate, so all see the same load
        for kind in order:
            runs[kind].append(
                _measure(fl_python if kind == "flower" else sys.executable, kind, quick)
            )
    med = {
        k: {
            "wall_s": statistics.median(x["wall_s"] for x in v),
            "run_s": statistics.median(x["run_s"] for x in v),
            "peak_pss_gib": statistics.median(x["peak_pss_gib"] for x in v),
        }
        for k, v in runs.items()
    }
    fed_acc, fl_acc = runs["fedsim"][0]["accuracy"], runs["flower"][0]["accuracy"]
    if not quick and fl_acc and max(fl_acc) < 0.5:  # ten classes: chance is 0.1
        raise SystemExit(
            f"bench_flower: Flower never learned (best accuracy {max(fl_acc):.3f}): its clients "
            "failed (run `bench_flower.py --child flower --quick` with its interpreter to see "
            "why; e.g. its environment imports another fedsim checkout); no figure written"
        )
    gap = max((abs(a - b) for a, b in zip(fed_acc, fl_acc, strict=False)), default=None)
    return {
        FIGURE: {
            "value": med["fedsim"]["wall_s"] / med["flower"]["wall_s"],
            "target": f"<= {TARGET}",
            "raw": {
                "workload": "quickstart " + " ".join(WORKLOAD) + " train.local_epochs=1",
                "setup": {k: " ".join(v) for k, v in SETUP.items()},
                "repeats": len(runs["fedsim"]),
                "median": med,
                "workers_vs_flower": med["fedsim_workers"]["wall_s"] / med["flower"]["wall_s"],
                "loop_vs_fedsim": med["loop"]["wall_s"] / med["fedsim"]["wall_s"],
                "runs": runs,
                "fedsim_accuracy": fed_acc,
                "loop_accuracy": runs["loop"][0]["accuracy"],
                "flower_accuracy": fl_acc,
                "max_accuracy_gap": gap,
                "final_accuracy_gap": abs(fed_acc[-1] - fl_acc[-1]) if fl_acc else None,
                "flwr": runs["flower"][0].get("flwr"),
                "flower_python": fl_python,
            },
        }
    }


def _describe(raw: dict) -> str:
    m = raw["median"]
    return (
        f"medians of {raw['repeats']}: fedsim in process (2 threads) {m['fedsim']['wall_s']:.1f} s "
        f"{m['fedsim']['peak_pss_gib']:.2f} GiB, with 2 workers "
        f"{m['fedsim_workers']['wall_s']:.1f} s {m['fedsim_workers']['peak_pss_gib']:.2f} GiB "
        f"({raw['workers_vs_flower']:.3f} of Flower), loop {m['loop']['wall_s']:.1f} s "
        f"{m['loop']['peak_pss_gib']:.2f} GiB, Flower {m['flower']['wall_s']:.1f} s "
        f"{m['flower']['peak_pss_gib']:.2f} GiB; final accuracy fedsim "
        f"{raw['fedsim_accuracy'][-1]:.3f}, Flower {raw['flower_accuracy'][-1]:.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    from run import standalone

    opts: dict = {}

    def extra(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--repeats", type=int, default=REPEATS, help="runs of each kind (median)")
        ap.add_argument("--flower-python", metavar="PATH", help="the interpreter that has flwr")
        ap.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)

    def hidden(args: argparse.Namespace) -> int | None:
        if args.child:  # one measured process of the side-by-side run
            print(json.dumps(child(args.child, args.quick)))
            return 0
        opts.update(repeats=args.repeats, python=args.flower_python)
        return None

    def measure(quick: bool) -> dict[str, dict]:
        return run(quick, opts["repeats"], opts["python"])

    return standalone(__doc__, measure, _describe, argv, hidden, extra)


if __name__ == "__main__":
    sys.exit(main())
