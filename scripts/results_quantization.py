"""Run (or read) the quantization experiments and write docs/results/quantization.md.

    python scripts/results_quantization.py             # run missing variants, write the page
    python scripts/results_quantization.py --no-run    # only read existing run directories
    python scripts/results_quantization.py --rerun     # run every variant again

Scenarios: scenarios/quant_robust.toml and scenarios/oqfl.toml on the narrow CNN (PAPERS.md
"Settings that can tell methods apart"); every variant the page shows runs with
`fedsim run --variant V --seeds 0,1,2` into runs/quantization/<scenario>/<V>/<V>/seed-N,
`--jobs` variants at a time (one torch thread each). Every figure on the page is read from
those run directories: accuracies and exact wire bytes from metrics.jsonl and summary.json,
PTQ accuracies from the `ptq_*` fields of the last metrics row, paper-style bits from the
algorithms' `paper_bits_up`; mean ± std over the seeds (numpy.std, ddof = 0, as `fedsim
compare`). FedDQ and AdaQuantFL have their own page, results/feddq.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import resultslib
from resultslib import pm, pyplot, save_figure, verdict

from fedsim.runtime.jsonl import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "quantization"
PAGE = ROOT / "docs" / "results" / "quantization.md"
IMG = ROOT / "docs" / "results" / "img"
TIMING = RUNS / "timing.json"
SEEDS = (0, 1, 2)
COMMAND = "python scripts/results_quantization.py --rerun"

# (scenario, variant): the page's rows, in order
ROBUST = ("fedavg", "kure", "qat-4", "qat-2", "mqat", "hetero")
OQFL = (
    "oqfl-2",
    "oqfl-3",
    "oqfl-4",
    "oqfl-4-int-stochastic",  # the int wire's defaults: server latent, stochastic rounding
    "oqfl-4-int",
    "oqfl-4-int-nolatent",
)
INT = "oqfl-4-int-stochastic"  # the row the int-wire target is judged on
JOBS = [("oqfl", v) for v in OQFL] + [("quant_robust", v) for v in ROBUST]

# the PTQ columns (fedsim/eval/ptq.py configs; "PT": one weight scale per tensor)
PTQ = ("fp32", "W8A8", "W4A4", "W3A3", "W2A8", "W2", "W3PT", "W2PT")
LOW = ("W4A4", "W3A3", "W2A8", "W2", "W3PT", "W2PT")  # "4 bits and below"
LABEL = {"W3PT": "W3 per-tensor", "W2PT": "W2 per-tensor"}


# ---- running ------------------------------------------------------------------------------
def run_dir(sc: str, variant: str) -> Path:
    return RUNS / sc / variant


def seed_dirs(sc: str, variant: str) -> list[Path]:
    return resultslib.variant_seed_dirs(run_dir(sc, variant), variant, SEEDS)


def complete(sc: str, variant: str) -> bool:
    return resultslib.finished(seed_dirs(sc, variant))


SETS: list[str] = []  # --set overrides passed to every run (smoke tests: rounds=2)


def run_all(rerun: bool, jobs: int) -> dict | None:
    todo = [(sc, v) for sc, v in JOBS if rerun or not complete(sc, v)]
    if not todo:
        return None
    sets = [a for s in SETS for a in ("--set", s)]
    commands = {
        f"{sc}/{v}": resultslib.fedsim_run(f"scenarios/{sc}.toml", v, SEEDS, run_dir(sc, v), *sets)
        for sc, v in todo
    }
    load0 = os.getloadavg()[0]
    ran = resultslib.run_side_by_side(commands, jobs, ROOT, quiet=True)
    timing = {
        "wall_s": ran.total_s,
        "jobs": jobs,
        "runs": len(todo) * len(SEEDS),
        "all": len(todo) == len(JOBS),
        "per_variant_s": {k: round(dt, 1) for k, dt in ran.wall_s.items()},
        "cpus": os.cpu_count(),
        "loadavg_1min": [round(load0, 1), round(os.getloadavg()[0], 1)],  # at start, at end
        "date": ran.date,
    }
    TIMING.parent.mkdir(parents=True, exist_ok=True)
    TIMING.write_text(json.dumps(timing, indent=1))
    return timing


# ---- reading ------------------------------------------------------------------------------
def load(sc: str, variant: str) -> list[dict] | None:
    """Per seed: metrics rows, summary and scenario of the run (None if a seed is missing)."""
    if not complete(sc, variant):
        return None
    out = []
    for d in seed_dirs(sc, variant):
        out.append(
            {
                "dir": d,
                "rows": list(read_jsonl(d / "metrics.jsonl")),
                "summary": json.loads((d / "summary.json").read_text()),
            }
        )
    return out


def per_seed(runs: list[dict], key) -> list[float]:
    return [float(key(r)) for r in runs]


def paired(a: list[float], b: list[float]) -> list[float]:
    """Seed-by-seed differences a − b (same seed: same data split and initial model)."""
    return [x - y for x, y in zip(a, b, strict=True)]


def final_acc(run: dict) -> float:
    return run["summary"]["final_accuracy"]


def ptq_value(run: dict, cfg: str) -> float:
    return run["rows"][-1][f"ptq_{cfg}"]


def oqfl_weight_fraction(run: dict) -> tuple[float, dict[str, int]]:
    """Fraction of conv/linear weights at the run's b bits, and {layer: bits}."""
    from fedsim.algorithms import build_algorithm
    from fedsim.runtime.build import load_data, make_model
    from fedsim.scenario import load_scenario

    sc = load_scenario(run["dir"] / "scenario.toml", [])
    algo = build_algorithm(sc)
    model = make_model(sc, load_data(sc))
    bits = algo.convert(model)
    sizes = {n: m.weight.numel() for n, m in model.named_modules() if n in bits}
    at_b = sum(sizes[n] for n, b in bits.items() if b == algo.options.bits)
    return at_b / sum(sizes.values()), bits


# ---- sections -----------------------------------------------------------------------------
def robust_section(runs: dict[str, list[dict]]) -> tuple[list[str], list[str]]:
    cols = [LABEL.get(c, c) for c in PTQ]
    lines = [
        "## Quantization-robust FedAvg: PTQ of the final global model",
        "",
        "`scenarios/quant_robust.toml`. Each final global model is quantized after training",
        "(fedsim/eval/ptq.py: symmetric min-max weights per output channel — per tensor in the",
        "*per-tensor* columns — and per-tensor layer inputs calibrated on 4 training batches;",
        "W2/W3 without A are weight-only) and evaluated on the 1,000 test digits. Test accuracy",
        "in %, mean ± std over seeds 0, 1, 2; **bold**: mean above plain FedAvg's at that config.",
        "QAT-4 trains W4A4, QAT-2 trains W2A8, MQAT draws b ∈ {4..8} per step, hetero trains at",
        "each device's bits (laptops 8, phones 4).",
        "",
        "| method | " + " | ".join(cols) + " |",
        "|---|" + "---:|" * len(PTQ),
    ]
    table = {
        n: {c: per_seed(r, lambda x, c=c: ptq_value(x, c)) for c in PTQ} for n, r in runs.items()
    }
    base = table.get("fedavg")
    for name, row in table.items():
        cells = []
        for c in PTQ:
            better = base and name != "fedavg" and np.mean(row[c]) > np.mean(base[c])
            cells.append(f"**{pm(row[c])}**" if better else pm(row[c]))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    claims = []
    if not base:
        return lines, claims
    lines += [
        "",
        "Gain over plain FedAvg at 4 bits and below, in points (paired by seed: same data split",
        "and initial model), mean ± std:",
        "",
        "| method | " + " | ".join(LABEL.get(c, c) for c in LOW) + " |",
        "|---|" + "---:|" * len(LOW),
    ]
    for name, row in table.items():
        if name == "fedavg":
            continue
        diffs = {c: paired(row[c], base[c]) for c in LOW}
        lines.append(f"| {name} | " + " | ".join(pm(diffs[c]) for c in LOW) + " |")
    claims.append(
        "**Claim (Gupta et al.): at every bit-width of 4 and below, each robust variant keeps "
        "more accuracy than plain FedAvg quantized the same way.** Per variant, over the six "
        "columns " + ", ".join(LABEL.get(c, c) for c in LOW) + " (mean over seeds):"
    )
    for name, row in table.items():
        if name == "fedavg":
            continue
        wins = [c for c in LOW if np.mean(row[c]) > np.mean(base[c])]
        losses = [c for c in LOW if c not in wins]
        word = verdict(not losses, bool(wins))
        # a gain larger than twice the seed spread of the paired difference (and positive on
        # every seed) is one that 3 seeds can show
        clear = [
            c for c in LOW if min(d := paired(row[c], base[c])) > 0 and np.mean(d) > 2 * np.std(d)
        ]
        gains = ", ".join(
            f"{LABEL.get(c, c)} {100 * (np.mean(row[c]) - np.mean(base[c])):+.1f}" for c in LOW
        )
        claims.append(
            f"- {name}: **{word}** — above FedAvg at {len(wins)} of {len(LOW)}"
            + (f" (not at {', '.join(LABEL.get(c, c) for c in losses)})" if losses else "")
            + f"; points vs FedAvg: {gains}; above on every seed and by more than twice the "
            f"seed spread at {len(clear)} of {len(LOW)}"
            + (f" ({', '.join(LABEL.get(c, c) for c in clear)})" if clear else "")
            + (
                " — so it holds by the means only, within the seed noise"
                if word == "holds" and not clear
                else ""
            )
            + "."
        )
    claims.append("")
    w8 = {n: paired(row["W8A8"], row["fp32"]) for n, row in table.items()}
    worst = min(w8, key=lambda n: np.mean(w8[n]))
    ok = all(abs(np.mean(v)) <= 0.01 for v in w8.values())
    every_seed = all(abs(x) <= 0.01 for v in w8.values() for x in v)
    word = verdict(ok and every_seed, ok)
    claims.append(
        "**Claim: at W8A8 every model is within 1 point of its fp32 accuracy.** "
        f"**{word}**: W8A8 − fp32 ranges over methods from "
        f"{100 * min(np.mean(v) for v in w8.values()):+.1f} to "
        f"{100 * max(np.mean(v) for v in w8.values()):+.1f} points (mean over seeds; largest "
        f"drop {worst}, {pm(w8[worst])}); against FedAvg's fp32 the robust variants' W8A8 are "
        + ", ".join(
            f"{n} {100 * (np.mean(table[n]['W8A8']) - np.mean(base['fp32'])):+.1f}"
            for n in table
            if n != "fedavg"
        )
        + " points."
    )
    return lines, claims


OQFL_NOTE = {
    "oqfl-2": "latent",
    "oqfl-3": "latent",
    "oqfl-4": "latent",
    "oqfl-4-int-stochastic": "int: server latent, stochastic rounding up (default)",
    "oqfl-4-int": "int: server latent, nearest rounding up",
    "oqfl-4-int-nolatent": "int: mean projected on the grid, nearest (first build)",
}


def oqfl_section(
    runs: dict[str, list[dict]], fedavg: list[dict] | None
) -> tuple[list[str], list[str]]:
    lines = [
        "## OQFL: learned step sizes (LSQ) vs fp32 FedAvg",
        "",
        "`scenarios/oqfl.toml`. Accuracy is the OQFL model's own: weights (and layer inputs)",
        "through its learned b-bit quantizers, first and last layer at 8 bits (the paper's",
        "setting) — so the PTQ columns above do not apply to these rows. *at b bits* is the",
        "fraction of the conv/linear weights that are at b bits. Δ is paired by seed against",
        "plain FedAvg fp32 (the `fedavg` row above: the same training, PTQ only evaluates).",
        "Bytes are exact wire bytes of the whole run (25 rounds × 5 clients), mean over seeds;",
        "paper Mbit counts b bits per quantized weight and 32 per fp32 value.",
        "",
        "| variant | wire | at b bits | accuracy % | Δ vs FedAvg fp32 (pts) | MB up "
        "| FedAvg's uplink ÷ this | MB down | paper Mbit up |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base_acc = per_seed(fedavg, final_acc) if fedavg else None
    base_up = float(np.mean(per_seed(fedavg, lambda r: r["summary"]["bytes_up_total"])))
    if fedavg:
        lines.append(
            f"| fedavg (fp32) | fp32 | – | {pm(base_acc)} | – | {base_up / 1e6:.2f} | 1× "
            f"| {np.mean(per_seed(fedavg, lambda r: r['summary']['bytes_down_total'])) / 1e6:.2f}"
            f" | {32 * fedavg[0]['summary']['model_params'] * sum(r['aggregated'] for r in fedavg[0]['rows']) / 1e6:.1f} |"
        )
    stats = {}
    for name, rs in runs.items():
        acc = per_seed(rs, final_acc)
        up = float(np.mean(per_seed(rs, lambda r: r["summary"]["bytes_up_total"])))
        down = float(np.mean(per_seed(rs, lambda r: r["summary"]["bytes_down_total"])))
        paper = float(
            np.mean(per_seed(rs, lambda r: sum(x.get("paper_bits_up") or 0 for x in r["rows"])))
        )
        frac, bits = oqfl_weight_fraction(rs[0])
        diff = paired(acc, base_acc) if base_acc else None
        stats[name] = {"acc": acc, "diff": diff, "up": up, "frac": frac, "bits": bits}
        lines.append(
            f"| {name} | {OQFL_NOTE.get(name, '')} | {100 * frac:.1f}% | {pm(acc)} "
            f"| {pm(diff) if diff else '–'} | {up / 1e6:.2f} | {base_up / up:.2f}× "
            f"| {down / 1e6:.2f} | {paper / 1e6:.1f} |"
        )
    four = stats.get("oqfl-4", {}).get("bits", {})
    lines += [
        "",
        "Layer bits of `oqfl-4`: "
        + ", ".join(f"`{n}` {b}" for n, b in four.items())
        + " (at b bits: the middle layers; the first conv holds 200 weights, the last linear 640).",
    ]
    claims = []
    if not base_acc:
        return lines, claims

    def word(diff: list[float]) -> str:
        return verdict(all(d >= -0.01 for d in diff), np.mean(diff) >= -0.01)

    if "oqfl-4" in stats:
        d = stats["oqfl-4"]["diff"]
        claims.append(
            "- **Claim (Kim & Hong): 4-bit OQFL is within 1 point of fp32 FedAvg.** "
            f"**{word(d)}** in the paper's `latent` wire mode: Δ = {pm(d)} points "
            f"(per seed {', '.join(f'{100 * x:+.1f}' for x in d)}), with "
            f"{100 * stats['oqfl-4']['frac']:.1f}% of the weights at 4 bits; its uplink is "
            "FedAvg's (fp32 latent weights)."
        )
    if INT in stats:
        s = stats[INT]
        ratio = base_up / s["up"]
        w = word(s["diff"])
        both = w if ratio >= 4 else ("holds partly" if w != "does not hold here" else w)
        claims.append(
            "- **Target: 4-bit `int` wire within 1 point of fp32 FedAvg at ≥ 4× smaller uplink.** "
            f"**{both}** with its defaults (`{INT}`: server latent, stochastic rounding on the "
            f"uplink): Δ = {pm(s['diff'])} points (per seed "
            f"{', '.join(f'{100 * x:+.1f}' for x in s['diff'])}), uplink {ratio:.1f}× smaller "
            f"({s['up'] / 1e6:.2f} MB against {base_up / 1e6:.2f} MB)."
        )
    comparisons = (
        (
            "oqfl-4-int",
            "oqfl-4-int-nolatent",
            "- **Server fp32 latent vs projecting the average every round** (the first build's "
            "`int` mode): the latent gains {} points (paired by seed).",
        ),
        (
            "oqfl-4-int-stochastic",
            "oqfl-4-int",
            "- **Stochastic vs nearest rounding of the uplink codes** (both with the latent): "
            "stochastic gains {} points (paired by seed); it is the default since this page.",
        ),
        (
            "oqfl-4-int-stochastic",
            "oqfl-4-int-nolatent",
            "- **The int wire's defaults against the first build**: {} points (paired by seed).",
        ),
    )
    for better, worse, text in comparisons:
        if better in stats and worse in stats:
            claims.append(text.format(pm(paired(stats[better]["acc"], stats[worse]["acc"]))))
    for b in (2, 3):
        n = f"oqfl-{b}"
        if n in stats:
            claims.append(
                f"- {b}-bit OQFL (latent): Δ = {pm(stats[n]['diff'])} points vs fp32 FedAvg "
                f"({100 * stats[n]['frac']:.1f}% of the weights at {b} bits)."
            )
    return lines, claims


def plot(runs: dict[str, list[dict]], fedavg: list[dict] | None) -> list[str]:
    plt = pyplot(IMG)
    if plt is None:
        return []
    fig, ax = plt.subplots(figsize=(7, 4.2))
    series = ({"fedavg (fp32)": fedavg} if fedavg else {}) | runs
    for name, rs in series.items():
        curves = []
        for r in rs:
            pts = [
                (x["round"], x["test_accuracy"])
                for x in r["rows"]
                if x.get("test_accuracy") is not None
            ]
            curves.append(pts)
        rounds = [p[0] for p in curves[0]]
        acc = np.array([[p[1] for p in c] for c in curves])
        m, s = acc.mean(axis=0), acc.std(axis=0)
        ax.plot(rounds, m, label=name)
        ax.fill_between(rounds, m - s, m + s, alpha=0.2)
    ax.set(
        xlabel="round", ylabel="test accuracy", title="OQFL vs fp32 FedAvg (mean ± std, 3 seeds)"
    )
    ax.set_ylim(0.8, 1.0)
    ax.legend(fontsize=7)
    save_figure(fig, IMG / "quant_oqfl_accuracy.png", 110)
    return ["![OQFL accuracy per round, mean ± std](img/quant_oqfl_accuracy.png)", ""]


def timing_line() -> list[str]:
    t = resultslib.read_json(TIMING)
    if t is None:
        return ["Wall time: not measured (the runs were not made by this script)."]
    scope = "all" if t.get("all") else "the missing"
    return [
        f"Measured wall time of {scope} {t['runs']} runs: **{t['wall_s'] / 60:.1f} min** "
        f"({t['jobs']} variants at a time, one torch thread each, on a machine with "
        f"{t['cpus']} CPU cores shared with other work"
        + (
            f", 1-minute load average {t['loadavg_1min'][0]} at the start and "
            f"{t['loadavg_1min'][1]} at the end"
            if "loadavg_1min" in t
            else ""
        )
        + f"; {t['date']}). Per variant (3 seeds "
        "one after another): "
        + ", ".join(f"{k.split('/')[1]} {v / 60:.1f} min" for k, v in t["per_variant_s"].items())
        + f". Target ≤ 30 min on 2 cores: **{'met' if t['wall_s'] <= 1800 else 'not met'}**"
        + ("" if t["wall_s"] <= 1800 else " on this shared machine")
        + ".",
    ]


NOTES = [
    "## Caveats",
    "",
    "- Small setting: mnist5k (5,000 training and 1,000 test digits), a narrow CNN, 25",
    "  rounds, 3 seeds. The papers use CNNs/ResNets on CIFAR-10 and many more rounds; the",
    '  scenarios run there unchanged with `--set data.dataset="cifar10"` and another model.',
    "  One test-set point is 0.1%; the seed spread is printed next to every mean.",
    "- The std is over 3 seeds (population std): a difference smaller than about two stds",
    '  is not a finding. "Final accuracy" is the evaluation after round 25; the curves are',
    "  still rising and swing by 1–3 points from round to round (figure above), so a",
    "  one-point verdict rests on a noisy last point.",
    "- MQAT trains at b ∈ {4..8} and hetero at 4 or 8 bits: the W2/W3 columns lie outside",
    "  the bit-widths they trained for; KURE and QAT-2 are the variants that target 2 bits.",
    "- The wall time above was measured while other sessions shared the 2 cores (load",
    "  average on the timing line), so each process had a fraction of a core. An earlier",
    "  batch of the same 36 runs by this script, under heavier load (1-minute load average",
    "  9 to 15 by `uptime`), took 44.3 min and gave the same model hash in all 36 runs.",
    "- PTQ is min-max (no clipping search, no bias correction, no AdaRound): stronger PTQ",
    "  would shrink FedAvg's loss at 2 bits and with it the robust variants' advantage.",
    "- OQFL `int` sends b-bit codes both ways (the downlink per tensor since this build:",
    "  quantized weights as their codes, biases and steps fp32). The server's latent is",
    "  declared server state (`OQFL.server_state_fields`), so a resumed run continues it and",
    "  ends with the same model hash (tests/fedsim/test_oqfl_int.py).",
    "- FedDQ and AdaQuantFL: see [feddq.md](feddq.md).",
    "",
]


def write_page() -> str:
    robust = {v: r for v in ROBUST if (r := load("quant_robust", v))}
    oq = {v: r for v in OQFL if (r := load("oqfl", v))}
    fedavg = robust.get("fedavg")
    out = [
        "# Quantization: OQFL and quantization-robust FedAvg",
        "",
        "Generated by `scripts/results_quantization.py` from real runs; regenerate with",
        "",
        "```",
        COMMAND + "   # without --rerun: only the missing runs; --no-run: page only",
        "```",
        "",
        *timing_line(),
        "",
        'Setting (PAPERS.md, "Settings that can tell methods apart"): mnist5k, the narrow CNN',
        '(`model.name = "cnn"`, `model.args = {channels = [8, 16], hidden = 64}`: conv5x5 8,',
        "conv5x5 16, linear 784→64, linear 64→10; 54,216 weights), 20 clients with Dirichlet(0.5)",
        "label skew, 5 per round, 2 local epochs of SGD (batch 20, lr 0.05, momentum 0.5), 25",
        "rounds, seeds 0, 1, 2 (the seed sets the data split, the initial model and the",
        "sampling). Runs in `runs/quantization/<scenario>/<variant>/<variant>/seed-N/`.",
        "FedDQ and AdaQuantFL moved to their own page: [feddq.md](feddq.md).",
        "",
    ]
    verdicts: list[str] = []
    if robust:
        lines, v = robust_section(robust)
        out += lines + [""]
        verdicts += v + [""]
    if oq:
        lines, v = oqfl_section(oq, fedavg)
        out += lines + [""]
        verdicts += v + [""]
        out += plot(oq, fedavg)
    out += ["## Verdicts", ""] + verdicts
    out += NOTES
    return "\n".join(out)


def main() -> int:
    global RUNS, PAGE, IMG, TIMING
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-run", action="store_true", help="only read existing run directories")
    ap.add_argument("--rerun", action="store_true", help="run every variant again")
    ap.add_argument("--jobs", type=int, default=2, help="variants run at the same time")
    ap.add_argument("--runs", type=Path, help=f"run directories (default {RUNS})")
    ap.add_argument("--page", type=Path, help=f"page to write (default {PAGE})")
    ap.add_argument("--set", action="append", default=[], help="override for every run")
    args = ap.parse_args()
    if args.runs:
        RUNS, TIMING = args.runs, args.runs / "timing.json"
    if args.page:
        PAGE, IMG = args.page, args.page.parent / "img"
    SETS.extend(args.set)
    if not args.no_run:
        run_all(args.rerun, args.jobs)
    page = write_page()
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(page if page.endswith("\n") else page + "\n")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
