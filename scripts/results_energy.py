"""Write docs/results/energy.md: device energy of fp32 against a 4-bit uplink, from real runs.

    python scripts/results_energy.py            # run missing variants, then write the page
    python scripts/results_energy.py --no-run   # only read existing run directories
    python scripts/results_energy.py --rerun    # run both variants again

Runs scenarios/heterogeneous.toml (3G/4G/Wi-Fi mix, Markov availability, 1.5x over-commit)
for ROUNDS rounds, once with fp32 updates and once with ``codec.uplink = "q4:stochastic"``,
into runs/energy/<variant>, then `fedsim compare` on the two. Every figure on the page is
read from the runs' metrics.jsonl (``energy_j`` and its parts per round), traffic.jsonl
(``energy_j`` per message) and summary.json (``energy_j_total``): the coordinator must
write them (network/energy.py, docs/energy.md); the script stops with a message if not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from fedsim.runtime.jsonl import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = "scenarios/heterogeneous.toml"
RUNS = "runs/energy"
PAGE = "docs/results/energy.md"
ROUNDS = 5
VARIANTS = {
    "fp32": [],
    "q4": ["--set", "codec.uplink=q4:stochastic"],
}
PARTS = ("energy_compute_j", "energy_down_j", "energy_up_j", "energy_tail_j", "energy_idle_j")


def run_variant(name: str, runs: Path, rerun: bool) -> None:
    out = runs / name
    if (out / "summary.json").exists() and not rerun and _has_energy(out):
        return
    cmd = [sys.executable, "-m", "fedsim.cli", "run", SCENARIO, "--set", f"rounds={ROUNDS}"]
    cmd += [*VARIANTS[name], "--out", str(out), "--force", "--quiet", "--summary"]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _has_energy(d: Path) -> bool:
    """Whether a finished run reports energy (runs from before the integration do not)."""
    metrics = list(read_jsonl(d / "metrics.jsonl")) if (d / "metrics.jsonl").exists() else []
    return bool(metrics) and all("energy_j" in m for m in metrics)


def load_run(d: Path) -> dict:
    summary = json.loads((d / "summary.json").read_text())
    metrics = list(read_jsonl(d / "metrics.jsonl"))
    traffic = list(read_jsonl(d / "traffic.jsonl"))
    if not _has_energy(d):
        sys.exit(
            f"{d}/metrics.jsonl has no energy_j: the coordinator does not report energy yet "
            "(docs/energy.md, section 4); rerun with --rerun once it does"
        )
    devices = {}
    if (d / "devices.json").exists():
        devices = {
            x["client"]: x["profile"]
            for x in json.loads((d / "devices.json").read_text())["devices"]
        }
    return {"summary": summary, "metrics": metrics, "traffic": traffic, "devices": devices}


def fmt_j(j: float | None) -> str:
    if j is None:
        return "—"
    for unit, scale in (("kJ", 1e3), ("J", 1.0)):
        if abs(j) >= scale:
            return f"{j / scale:.2f} {unit}"
    return f"{j * 1e3:.1f} mJ"


def fmt_mb(b: float) -> str:
    return f"{b / 1e6:.2f} MB"


def per_profile(run: dict) -> dict[tuple[str, str], float]:
    """Joules per (profile, message kind) from traffic.jsonl's per-message energy_j."""
    out: dict[tuple[str, str], float] = {}
    for t in run["traffic"]:
        if t.get("energy_j") is None:
            continue
        key = (run["devices"].get(t["client"], "?"), t["kind"])
        out[key] = out.get(key, 0.0) + t["energy_j"]
    return out


def write_page(runs: dict[str, dict], compare_table: str) -> str:
    names = list(runs)
    lines = [
        "# Device energy: fp32 against a 4-bit uplink",
        "",
        f"`python scripts/results_energy.py` — {SCENARIO}, {ROUNDS} rounds, seed "
        f"{runs[names[0]]['summary'].get('seed')}: 40 clients (25 % phone-3g, 45 % phone-4g, "
        "30 % laptop-wifi, lognormal spread 0.3), Markov availability, 12 selected per round "
        "and the first 8 updates kept. `fp32` sends float32 updates, `q4` "
        '`codec.uplink = "q4:stochastic"`; the model goes down in fp32 in both. Energy is '
        "the power model of [docs/energy.md](../energy.md) integrated over every selected "
        "client's simulated timeline (stragglers and dropped clients included, up to their drop).",
        "",
        "## Per round",
        "",
        "| round | "
        + " | ".join(f"{n} energy | {n} bytes up | {n} round time" for n in names)
        + " |",
        "|---:|" + "---:|---:|---:|" * len(names),
    ]
    n_rounds = max(len(r["metrics"]) for r in runs.values())
    for i in range(n_rounds):
        cells = []
        for n in names:
            ms = runs[n]["metrics"]
            if i >= len(ms):
                cells += ["—", "—", "—"]
                continue
            m = ms[i]
            prev = ms[i - 1]["sim_time"] if i else 0.0
            cells += [fmt_j(m["energy_j"]), fmt_mb(m["bytes_up"]), f"{m['sim_time'] - prev:.1f} s"]
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    lines += ["", "## Totals and parts", ""]
    lines += ["| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    totals = {n: sum(m["energy_j"] for m in r["metrics"]) for n, r in runs.items()}
    lines.append("| energy, all rounds | " + " | ".join(fmt_j(totals[n]) for n in names) + " |")
    for k in PARTS:
        vals = [sum(m.get(k) or 0.0 for m in runs[n]["metrics"]) for n in names]
        lines.append(f"| {k} | " + " | ".join(fmt_j(v) for v in vals) + " |")
    lines.append(
        "| summary.json energy_j_total | "
        + " | ".join(fmt_j(runs[n]["summary"].get("energy_j_total")) for n in names)
        + " |"
    )
    summ = {n: runs[n]["summary"] for n in names}
    rows = (
        ("bytes up, all rounds", lambda s: fmt_mb(s["bytes_up_total"])),
        ("simulated time", lambda s: f"{s['sim_time_total']:.1f} s"),
        ("final accuracy", lambda s: f"{s['final_accuracy']:.1%}"),
    )
    for label, fmt in rows:
        lines.append(f"| {label} | " + " | ".join(fmt(summ[n]) for n in names) + " |")
    prof = {n: per_profile(r) for n, r in runs.items()}
    keys = sorted(set().union(*prof.values()))
    if keys:
        lines += ["", "## Per message kind and device profile (traffic.jsonl `energy_j`)", ""]
        lines += [
            "| profile | message | " + " | ".join(names) + " |",
            "|---|---|" + "---:|" * len(names),
        ]
        for key in keys:
            lines.append(
                f"| {key[0]} | {key[1]} | "
                + " | ".join(fmt_j(prof[n].get(key)) for n in names)
                + " |"
            )
    if compare_table:
        lines += ["", "## `fedsim compare`", "", "```", compare_table.rstrip(), "```"]
    a, b = totals.get("fp32"), totals.get("q4")
    if a and b:
        lines += [
            "",
            "## Closing note",
            "",
            f"Over {ROUNDS} rounds the selected devices spent {fmt_j(a)} with fp32 updates and "
            f"{fmt_j(b)} with 4-bit updates ({(b - a) / a:+.1%}). Read the parts before the "
            "total: the 4-bit uplink shrinks `energy_up_j` (fewer bytes, shorter uploads), "
            "while compute, download, the cellular tails and the idle wait do not depend on "
            "the uplink codec, except through which clients arrive first.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-run", action="store_true", help="only read existing run directories")
    ap.add_argument("--rerun", action="store_true", help="run every variant again")
    ap.add_argument("--runs", default=RUNS)
    ap.add_argument("--page", default=PAGE)
    args = ap.parse_args()
    runs_dir = ROOT / args.runs
    if not args.no_run:
        for name in VARIANTS:
            run_variant(name, runs_dir, args.rerun)
    runs = {name: load_run(runs_dir / name) for name in VARIANTS}
    cmp = subprocess.run(
        [sys.executable, "-m", "fedsim.cli", "compare", *(str(runs_dir / n) for n in VARIANTS)]
        + ["--out", str(runs_dir / "compare")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    table = cmp.stdout if cmp.returncode == 0 else ""
    page = ROOT / args.page
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(write_page(runs, table))
    print(f"wrote {page.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
