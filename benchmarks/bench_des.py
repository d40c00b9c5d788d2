"""des_events_per_s: the discrete-event network model's event rate relative to bare simpy.

100 synchronous rounds x 1,000 clients (every client every round, so 1,000 concurrent flows
share each server link) with max-min fair sharing and synthetic byte sizes and FLOPs.
Model events (message sends, transmissions, deliveries, compute completions, drops) per
second of time spent in the model, divided by the rate at which simpy processes bare
timeout events (one process yielding ``env.timeout(1)``) measured in the same run.

    python benchmarks/bench_des.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import simpy
from fedsim.network.dryrun import dry_run

TARGET = 0.2  # at least


def simpy_timeout_rate(n: int = 300_000, repeats: int = 3) -> tuple[float, list[float]]:
    """Bare simpy: timeout events per second (best of ``repeats``)."""

    def ticker(env: simpy.Environment):
        timeout = env.timeout
        for _ in range(n):
            yield timeout(1.0)

    times = []
    for _ in range(repeats):
        env = simpy.Environment()
        env.process(ticker(env))
        start = time.perf_counter()
        env.run()
        times.append(time.perf_counter() - start)
    return n / min(times), times


def run(quick: bool = False) -> dict[str, dict]:
    rounds, clients = (10, 1000) if quick else (100, 1000)
    ref_rate, ref_times = simpy_timeout_rate(100_000 if quick else 300_000)
    result = dry_run(rounds=rounds, clients=clients, seed=0)
    rate = result.events / result.wall_s
    ref_rate_after, _ = simpy_timeout_rate(100_000 if quick else 300_000, repeats=1)
    ref = max(ref_rate, ref_rate_after)  # the faster reference is the stricter one
    return {
        "des_events_per_s": {
            "value": rate / ref,
            "target": TARGET,
            "raw": {
                "direction": ">=",
                "rounds": rounds,
                "clients": clients,
                "model_events": result.events,
                "model_wall_s": result.wall_s,
                "model_events_per_s": rate,
                "simpy_timeouts_per_s": ref,
                "simpy_ref_times_s": ref_times,
                "sim_time_s": result.sim_time_s,
                "accepted": result.accepted,
                "dropped": result.dropped,
                "python": sys.version.split()[0],
                "simpy": simpy.__version__,
            },
        }
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 rounds instead of 100")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    args = parser.parse_args(argv)
    figures = run(args.quick)
    for name, fig in figures.items():
        raw = fig["raw"]
        ok = fig["value"] >= fig["target"]
        print(
            f"{name}: {fig['value']:.3f} (target >= {fig['target']}) {'ok' if ok else 'MISSED'}  "
            f"[{raw['model_events']} events in {raw['model_wall_s']:.2f} s = "
            f"{raw['model_events_per_s']:,.0f}/s; simpy {raw['simpy_timeouts_per_s']:,.0f}/s]"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
