"""flower_vs_fedsim: fedsim side by side with Flower's simulation engine (where it installs).

The overhead workload (quick start: mnist5k, CNN, 20 Dirichlet clients, 5 per round, 1
local epoch, 10 rounds, evaluated every round) runs once through fedsim in process and
once through `flwr.simulation.start_simulation` (Ray), whose clients do the same local SGD
on the same partitions (the loop of bench_overhead.py) and whose FedAvg strategy takes the
sample-weighted mean, with the same centralised evaluation. Flower picks its own clients
each round, so accuracies agree within noise rather than exactly.

value = fedsim wall time / Flower wall time (fedsim should be faster: < 1.0); `raw` has
both accuracy curves and their largest gap. Needs `pip install "flwr[simulation]"`; without
it the figure is skipped with that message.

    python benchmarks/bench_flower.py [--quick] [--json PATH]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_overhead import _train_client, quickstart_scenario, run_fedsim  # noqa: E402

FIGURE = "flower_vs_fedsim"
TARGET = 1.0  # fedsim / Flower wall time, below this


def _skip(why: str) -> dict[str, dict]:
    return {FIGURE: {"value": None, "target": f"< {TARGET}", "skipped": why, "raw": {}}}


def _flower_run(sc) -> tuple[float, list[float]]:
    import flwr as fl
    import numpy as np
    import torch
    from flwr.common import ndarrays_to_parameters

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
        model.eval()
        with torch.no_grad():
            out = model(x_test)
            loss = float(torch.nn.functional.cross_entropy(out, y_test))
            acc = float((out.argmax(1) == y_test).float().mean())
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


def run(quick: bool = False) -> dict[str, dict]:
    try:
        import flwr  # noqa: F401
        import flwr.simulation  # noqa: F401
    except Exception as e:  # ImportError, or Ray missing behind flwr.simulation
        return _skip(
            f'Flower is not installed ({type(e).__name__}: {e}); pip install "flwr[simulation]" '
            "to run fedsim side by side with Flower's simulation engine"
        )
    sc = quickstart_scenario(quick)
    fed_wall, summary = run_fedsim(sc)  # the same workload as overhead_inproc
    fed_acc = summary["accuracy_curve"]
    flower_wall, flower_acc = _flower_run(sc)
    gap = max((abs(a - b) for a, b in zip(fed_acc, flower_acc, strict=False)), default=None)
    return {
        FIGURE: {
            "value": fed_wall / flower_wall,
            "target": f"< {TARGET}",
            "raw": {
                "fedsim_s": fed_wall,
                "flower_s": flower_wall,
                "fedsim_accuracy": fed_acc,
                "flower_accuracy": flower_acc,
                "max_accuracy_gap": gap,
                "final_accuracy_gap": abs(fed_acc[-1] - flower_acc[-1]) if flower_acc else None,
                "flwr": getattr(sys.modules.get("flwr"), "__version__", "?"),
            },
        }
    }


def main(argv: list[str] | None = None) -> int:
    from run import standalone

    return standalone(__doc__, run, str, argv)


if __name__ == "__main__":
    sys.exit(main())
