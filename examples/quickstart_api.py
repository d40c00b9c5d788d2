"""The quickstart from Python: run it, read its metrics, reload its final model.

    python examples/quickstart_api.py [--rounds N] [--out DIR]

Runs the shipped `quickstart` scenario in this process through `fedsim.run`, prints the
per-round metrics (as a pandas DataFrame when pandas is installed), then loads the saved
model.safetensors into the scenario's model and checks that its hash is the run's
model_sha256. Exits non-zero if it is not.
"""

from __future__ import annotations

import argparse
import sys

import fedsim


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2, help="rounds to run (default 2)")
    ap.add_argument("--out", help="run directory (default: a temporary folder)")
    args = ap.parse_args(argv)

    result = fedsim.run("quickstart", {"rounds": args.rounds}, out=args.out)
    s = result.summary
    print(
        f"{s['scenario']}: {s['rounds']} rounds, best accuracy {100 * s['best_accuracy']:.1f}%, "
        f"{s['bytes_up_total'] + s['bytes_down_total']:,} bytes, {s['sim_time_total']:.1f} s simulated"
    )

    try:
        frame = result.to_pandas()  # metrics, one row per round
        print(frame[["round", "sim_time", "bytes_up", "bytes_down", "test_accuracy"]].to_string())
    except fedsim.FedsimError:  # pandas not installed
        for row in result.metrics:
            print(row["round"], row["sim_time"], row["test_accuracy"])

    model = result.build_model()  # the scenario's model with the saved final weights
    digest = fedsim.model_sha256(model.state_dict())
    print(f"reloaded model.safetensors: sha256 {digest}")
    if digest != s["model_sha256"]:
        print(f"differs from summary.json's model_sha256 {s['model_sha256']}", file=sys.stderr)
        return 1
    print("matches summary.json's model_sha256")
    return 0


if __name__ == "__main__":
    sys.exit(main())
