"""des_events_per_s: the discrete-event network model's event rate relative to bare simpy.

100 synchronous rounds of 1,000 clients drawn from a population of 100,000 (so up to 1,000
flows share each server link at once) with max-min fair sharing and synthetic byte sizes
and FLOPs (fedsim.network.dryrun); the draw asks only the devices it picks
(`raw.select_wall_s` is its time, outside the model's). Model events (message sends, transmissions, deliveries,
compute completions, drops) per second of time spent inside the model, divided by the rate
at which simpy processes bare timeout events (one process yielding ``env.timeout(1)``).
The reference runs in slices between the rounds, so both see the same machine load.

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
ROUNDS = (10, 100)  # --quick, full
POPULATION = 100_000
CLIENTS = 1000  # per round
REF_SLICE = 20_000  # bare timeouts per reference slice (one slice after each round)


class _Reference:
    """Bare simpy timeout rate, accumulated over slices."""

    def __init__(self) -> None:
        self.events = 0
        self.seconds = 0.0

    def slice(self, n: int = REF_SLICE) -> None:
        env = simpy.Environment()

        def ticker():
            timeout = env.timeout
            for _ in range(n):
                yield timeout(1.0)

        env.process(ticker())
        start = time.perf_counter()
        env.run()
        self.seconds += time.perf_counter() - start
        self.events += n

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def run(quick: bool = False) -> dict[str, dict]:
    rounds = ROUNDS[0] if quick else ROUNDS[1]
    ref = _Reference()
    ref.slice()  # warm-up, not counted
    ref = _Reference()
    result = dry_run(
        rounds=rounds, clients=POPULATION, per_round=CLIENTS, seed=0, between_rounds=ref.slice
    )
    rate = result.events / result.wall_s
    return {
        "des_events_per_s": {
            "value": rate / ref.rate,
            "target": f">= {TARGET}",
            "raw": {
                "rounds": rounds,
                "population": POPULATION,
                "clients_per_round": CLIENTS,
                "select_wall_s": result.select_wall_s,
                "model_events": result.events,
                "model_wall_s": result.wall_s,
                "model_events_per_s": rate,
                "simpy_timeouts_per_s": ref.rate,
                "simpy_events": ref.events,
                "simpy_wall_s": ref.seconds,
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
        ok = fig["value"] >= TARGET
        print(
            f"{name}: {fig['value']:.3f} (target {fig['target']}) {'ok' if ok else 'MISSED'}  "
            f"[{raw['model_events']} events in {raw['model_wall_s']:.2f} s = "
            f"{raw['model_events_per_s']:,.0f}/s; simpy {raw['simpy_timeouts_per_s']:,.0f}/s]"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
