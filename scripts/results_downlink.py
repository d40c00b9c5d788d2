"""Write docs/results/downlink.md: downlink compression with and without error feedback.

    python scripts/results_downlink.py            # run what is missing, then write the page
    python scripts/results_downlink.py --no-run   # only read existing run directories

Runs scenarios/quickstart.toml (FedAvg, mnist5k, CNN, 20 clients, 5 per round, 20 rounds) with
the downlink codec fp32, `topk:0.1` (each client receives the top 10% of the global model's
entries, the rest as zeros) and `ef(topk:0.1)` (each client receives the top 10% of the
difference between the global model and the model it last received; docs/codecs.md,
"Downlink error feedback"), for seeds 0, 1, 2, into runs/downlink/<variant>-s<seed>. Every
figure on the page is read from those runs' summary.json and metrics.jsonl.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = "scenarios/quickstart.toml"
RUNS = ROOT / "runs/downlink"
PAGE = ROOT / "docs/results/downlink.md"
SEEDS = (0, 1, 2)
VARIANTS = {"fp32": "fp32", "topk-0.1": "topk:0.1", "ef-topk-0.1": "ef(topk:0.1)"}


def run(variant: str, seed: int) -> Path:
    out = RUNS / f"{variant}-s{seed}"
    if (out / "summary.json").exists():
        return out
    cmd = [sys.executable, "-m", "fedsim", "run", SCENARIO, "--out", str(out), "--force"]
    cmd += ["--quiet", "--set", f"seed={seed}", "--set", f'codec.downlink="{VARIANTS[variant]}"']
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)
    return out


def mean_std(xs: list[float]) -> str:
    return (
        f"{statistics.mean(xs):.1f} ± {statistics.stdev(xs):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-run", action="store_true")
    args = ap.parse_args()
    rows = {}
    for variant in VARIANTS:
        finals, bests, down = [], [], []
        for seed in SEEDS:
            out = RUNS / f"{variant}-s{seed}" if args.no_run else run(variant, seed)
            s = json.loads((out / "summary.json").read_text())
            finals.append(100 * s["final_accuracy"])
            bests.append(100 * s["best_accuracy"])
            down.append(s["bytes_down_total"])
        rows[variant] = (finals, bests, down)
    fp32_down = statistics.mean(rows["fp32"][2])
    lines = [
        "# Downlink compression with and without error feedback",
        "",
        "Quickstart (FedAvg, mnist5k, CNN, 20 clients with Dirichlet(0.5) labels, 5 per round, "
        "20 rounds, fp32 uplink), seeds 0, 1, 2; mean ± std over the seeds. `topk:0.1` sends "
        "each client the largest 10% of the global model's entries; `ef(topk:0.1)` sends the "
        "largest 10% of the difference between the global model and the model that client "
        'last received, which both sides keep (docs/codecs.md, "Downlink error feedback"). '
        "Bytes are exact wire bytes summed over the run.",
        "",
        "| downlink | final accuracy (%) | best accuracy (%) | downlink bytes (MB) | of fp32 |",
        "|---|---|---|---|---|",
    ]
    for variant, (finals, bests, down) in rows.items():
        d = statistics.mean(down)
        lines.append(
            f"| `{VARIANTS[variant]}` | {mean_std(finals)} | {mean_std(bests)} | "
            f"{d / 1e6:.1f} | {100 * d / fp32_down:.1f}% |"
        )
    lines += [
        "",
        "Per seed (final accuracy %): "
        + "; ".join(f"`{VARIANTS[v]}` " + ", ".join(f"{x:.1f}" for x in rows[v][0]) for v in rows)
        + ".",
        "",
        "Regenerate: `python scripts/results_downlink.py` (about 3 minutes per run on 2 cores).",
        "",
    ]
    PAGE.write_text("\n".join(lines))
    print(f"wrote {PAGE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
