"""netns_sweep: fedsim's flow-level network model against real TCP on shaped loopback.

Needs root, ``ip`` and ``tc`` (see tcp_harness.py, next to this file). Builds one private network
namespace, shapes its loopback with htb (server link = parent class, one child class per
device with the device's rate as ceiling), sends real fedsim wire-format messages over
ZeroMQ tcp, and compares per-message completion times with fedsim's model. For each seed:

1. calibration: single flows at 5, 20 and 100 Mbit/s, 0.1-8 MB; a least-squares fit of
   ``t - RTT/2 = a + wire_bits / (f · rate)`` weighted by 1/t (so it minimises relative
   errors, the sweep's measure) gives the usable-bandwidth factor ``f`` and the
   per-message overhead ``a``: the model's own two parameters, best fitted to this link;
2. the sweep: single flows (2-100 Mbit/s, 0.1-50 MB) and 2-16 concurrent devices with
   heterogeneous rates (log-uniform 2-100 Mbit/s), sizes 0.1-50 MB, behind a server link
   that is (or is not) the bottleneck, starting together or staggered; the seed draws them.

Every message is simulated from the measured send times and real wire bytes with four
settings: fedsim's defaults (``DEFAULT_BANDWIDTH_FACTOR``, latency RTT/2,
``DEFAULT_MESSAGE_OVERHEAD_S``), the calibrated model (``f``, RTT/2, ``a`` of the same
seed), the header arithmetic of htb (1448/1514, RTT/2, no overhead) and the defaults before
issue 19 (SimGrid's 0.97, RTT/2, no overhead).

    python benchmarks/netns_sweep.py [--quick] [--seeds 1,2,3] [--json PATH] [--page PATH]

``--page docs/network-validation.md`` rewrites that page's generated section (between its
``<!-- sweep:begin -->`` and ``<!-- sweep:end -->`` markers) from this run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import zmq
from fedsim.network.links import (
    DEFAULT_BANDWIDTH_FACTOR,
    DEFAULT_MESSAGE_OVERHEAD_S,
    SIMGRID_BANDWIDTH_FACTOR,
)
from tcp_harness import (  # benchmarks/tcp_harness.py: this script's folder is on sys.path
    HTB_OVERHEAD_FACTOR,
    Case,
    CaseResult,
    Namespace,
    Transfer,
    cli_can_run,
    run_case,
    simulate,
)

MB = 1_000_000
MBIT = 1e6
BEGIN, END = "<!-- sweep:begin -->", "<!-- sweep:end -->"
MEDIAN_TARGET, WORST_TARGET = 0.05, 0.15  # issue 19, build item 6


def calibration_cases() -> list[Case]:
    cases = []
    for rate in (5, 20, 100):
        for mb in (0.1, 0.3, 1, 3, 8):
            if mb * 8 / rate <= 6:
                cases.append(
                    Case(
                        f"cal-{rate}M-{mb:g}MB",
                        1e9,
                        (rate * MBIT,),
                        (Transfer(0, 0.0, int(mb * MB)),),
                    )
                )
    return cases


def _size_for(rng: random.Random, rate: float, t_lo: float, t_hi: float) -> int:
    """A size in 0.1-50 MB that takes t_lo..t_hi seconds alone at ``rate`` (log-uniform)."""
    t = math.exp(rng.uniform(math.log(t_lo), math.log(t_hi)))
    return int(min(max(rate * t / 8, 0.1 * MB), 50 * MB))


def sweep_cases(seed: int, quick: bool) -> list[Case]:
    rng = random.Random(seed)
    cases: list[Case] = []
    # Single flows: each rate with each size that finishes within ~20 s.
    for rate in (2, 10, 50, 100):
        for mb in (0.1, 1, 10, 50):
            if mb * 8 / rate <= 20 and not (quick and mb == 50):
                cases.append(
                    Case(
                        f"single-{rate}M-{mb:g}MB",
                        1e9,
                        (rate * MBIT,),
                        (Transfer(0, 0.0, int(mb * MB)),),
                    )
                )
    # Concurrent devices: heterogeneous rates, 0.1-50 MB, server bottleneck or not.
    ns = (2, 4, 8, 16) if not quick else (4, 16)
    for n in ns:
        for staggered in (False, True):
            for bottleneck in (True, False):
                rates = [
                    round(math.exp(rng.uniform(math.log(2), math.log(100))), 1) * MBIT
                    for _ in range(n)
                ]
                total = sum(rates)
                # Bottleneck: the server link is 30-60 % of the sum of the device rates.
                # Without one: above the sum, but at most 250 Mbit/s of traffic in total.
                if bottleneck:
                    server = total * rng.uniform(0.3, 0.6)
                else:
                    server = total * 1.2
                    if total > 200 * MBIT:
                        scale = 200 * MBIT / total
                        rates = [max(2 * MBIT, r * scale) for r in rates]
                        server = sum(rates) * 1.2
                transfers = []
                for i, r in enumerate(rates):
                    start = round(rng.uniform(0, 4.0), 2) if staggered else 0.0
                    share = min(r, server / n)  # roughly its rate under contention
                    transfers.append(Transfer(i, start, _size_for(rng, share, 0.5, 8.0)))
                name = f"n{n}-{'stag' if staggered else 'sync'}-{'bneck' if bottleneck else 'free'}"
                cases.append(Case(name, server, tuple(rates), tuple(transfers)))
    # One connection carrying three messages back to back, with a competitor.
    cases.append(
        Case(
            "inorder-2",
            30 * MBIT,
            (25 * MBIT, 50 * MBIT),
            (
                Transfer(0, 0.0, 2 * MB),
                Transfer(0, 0.0, 1 * MB),
                Transfer(0, 0.5, 3 * MB),
                Transfer(1, 1.0, 6 * MB),
            ),
        )
    )
    return cases


def fit(results: list[CaseResult]) -> dict:
    """Least squares of ``t - RTT/2 = a + x / f`` (x = wire bits / rate) weighted by 1/t,
    i.e. of the relative errors: returns f and a (seconds; ``a_s`` at least 0)."""
    xs, ys, ws = [], [], []
    for r in results:
        rate = r.case.device_bps[0]
        for b, m in zip(r.wire_bytes, r.measured_s, strict=True):
            xs.append(b * 8 / rate)
            ys.append(m - r.rtt_s / 2)
            ws.append(1.0 / m)
    w = np.array(ws)
    design = np.stack([np.ones(len(xs)), np.array(xs)], axis=1)
    coef = np.linalg.lstsq(design * w[:, None], np.array(ys) * w, rcond=None)[0]
    a, slope = (float(c) for c in coef)
    return {"f": 1.0 / slope, "a_s": max(a, 0.0), "a_raw_s": a}


def calibration_rows(results: list[CaseResult], seed: int) -> list[dict]:
    """The calibration's raw measurements (kept in the JSON so that the fit can be redone)."""
    return [
        {
            "seed": seed,
            "case": r.case.name,
            "rate_mbit": r.case.device_bps[0] / MBIT,
            "wire_bytes": b,
            "measured_s": m,
            "rtt_s": r.rtt_s,
            "load1": r.extra["load"][0],
        }
        for r in results
        for b, m in zip(r.wire_bytes, r.measured_s, strict=True)
    ]


def rows(results: list[CaseResult], settings: dict[str, tuple], seed: int) -> list[dict]:
    """One row per message: the measurement and each setting's simulated time and error."""
    out = []
    for r in results:
        sims = {}
        for key, (f, lat, overhead) in settings.items():
            latency = r.rtt_s / 2 if lat is None else lat
            sims[key] = simulate(
                r.case,
                r.send_s,
                r.wire_bytes,
                bandwidth_factor=f,
                latency_s=latency,
                message_overhead_s=overhead,
            )
        for k, t in enumerate(r.case.transfers):
            m = r.measured_s[k]
            row = {
                "seed": seed,
                "case": r.case.name,
                "n_devices": len(r.case.device_bps),
                "server_mbit": r.case.server_bps / MBIT,
                "device": t.device,
                "rate_mbit": r.case.device_bps[t.device] / MBIT,
                "mb": t.nbytes / MB,
                "wire_bytes": r.wire_bytes[k],
                "start_s": r.send_s[k],
                "measured_s": m,
                "rtt_s": r.rtt_s,
                "load1": r.extra["load"][0],
            }
            for key, s in sims.items():
                row[f"sim_{key}"] = s[k]
                row[f"err_{key}"] = (s[k] - m) / m
            out.append(row)
    return out


def stats(rs: list[dict], key: str) -> dict:
    errs = [abs(r[f"err_{key}"]) for r in rs]
    worst = max(rs, key=lambda r: abs(r[f"err_{key}"]))
    return {
        "median_abs_error": statistics.median(errs),
        "mean_abs_error": statistics.fmean(errs),
        "p90_abs_error": sorted(errs)[int(0.9 * (len(errs) - 1))],
        "worst_abs_error": abs(worst[f"err_{key}"]),
        "worst_error": worst[f"err_{key}"],
        "worst": f"{worst['case']} device {worst['device']} (seed {worst['seed']})",
        "within_5pct": sum(e <= 0.05 for e in errs) / len(errs),
        "within_15pct": sum(e <= 0.15 for e in errs) / len(errs),
    }


def group_of(r: dict) -> str:
    if r["n_devices"] == 1:
        return "single flows"
    if r["case"].startswith("inorder"):
        return "in order on one connection"
    when = "staggered" if "-stag-" in r["case"] else "together"
    where = "server bottleneck" if r["case"].endswith("bneck") else "no bottleneck"
    return f"{when}, {where}"


def size_of(r: dict) -> str:
    return "messages < 0.5 MB" if r["mb"] < 0.5 else "0.5–2 MB" if r["mb"] < 2 else "≥ 2 MB"


# ---- the page ---------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{x * 100:.2f} %"


def _mean_std(xs: list[float]) -> str:
    if len(xs) == 1:
        return _pct(xs[0])
    return f"{statistics.fmean(xs) * 100:.2f} ± {statistics.stdev(xs) * 100:.2f} %"


def _setting_label(key: str, setting: tuple, per_seed_cal: list[dict]) -> tuple[str, str, str]:
    f, lat, overhead = setting
    lat_s = "RTT/2" if lat is None else f"{lat * 1e3:.2f} ms"
    if key == "calibrated":  # per seed: show the range
        fs = [c["f"] for c in per_seed_cal]
        aa = [c["a_s"] * 1e3 for c in per_seed_cal]
        return (
            f"{min(fs):.4f}–{max(fs):.4f}" if len(fs) > 1 else f"{fs[0]:.4f}",
            lat_s,
            f"{min(aa):.2f}–{max(aa):.2f} ms" if len(aa) > 1 else f"{aa[0]:.2f} ms",
        )
    return f"{f:.4f}", lat_s, f"{overhead * 1e3:.2f} ms"


def verdict(per_seed: list[dict]) -> tuple[str, str]:
    """'holds' when every seed meets both targets, 'holds partly' when some target is met."""
    med = [s["median_abs_error"] <= MEDIAN_TARGET for s in per_seed]
    worst = [s["worst_abs_error"] <= WORST_TARGET for s in per_seed]
    if all(med) and all(worst):
        return "holds", "median ≤ 5 % and worst ≤ 15 % in every seed"
    if any(med) or any(worst):
        missed = []
        if not all(med):
            missed.append(f"median above 5 % in {med.count(False)} of {len(med)} seeds")
        if not all(worst):
            missed.append(f"worst above 15 % in {worst.count(False)} of {len(worst)} seeds")
        return "holds partly", "; ".join(missed)
    return "does not hold here", "neither target is met in any seed"


def page_section(summary: dict, rs: list[dict]) -> str:
    settings = summary["settings"]
    seeds = summary["seeds"]
    cal = summary["calibration"]
    names = {
        "defaults": "fedsim's defaults",
        "calibrated": "calibrated (same seed)",
        "htb": "htb header arithmetic",
        "old_defaults": "defaults before issue 19",
    }
    lines = [
        BEGIN,
        "<!-- generated by benchmarks/netns_sweep.py --page; edit the script, not this block -->",
        "",
        f"Run of {summary['date']} (seeds {', '.join(map(str, seeds))}"
        f"{', quick' if summary['quick'] else ''}), kernel {summary['kernel']}, "
        f"Python {summary['python']}, pyzmq {summary['pyzmq']} / libzmq {summary['libzmq']}, "
        f"TCP congestion control **{summary['tcp_cc']}** (inherited by the namespace). "
        f"**{summary['ncpu']} CPUs shared with other jobs: load average "
        f"{summary['load_before'][0]:.1f} before, {summary['load_after'][0]:.1f} after "
        f"(1-minute).** Loopback round trip (ZeroMQ ping-pong) median "
        f"{summary['median_rtt_s'] * 1e6:.0f} µs. {summary['n_messages']} messages in "
        f"{summary['n_cases']} cases. The run took **{summary['seconds']:.0f} s** of wall time:",
        "",
        "```",
        f"{summary['command']}",
        "```",
        "",
        "Calibration (single flows, fitted per seed before that seed's sweep):",
        "",
        "| seed | cases | f | overhead a |",
        "|---:|---:|---:|---:|",
    ]
    for seed, c in zip(seeds, cal, strict=True):
        lines.append(f"| {seed} | {c['cases']} | {c['f']:.4f} | {c['a_raw_s'] * 1e3:.2f} ms |")
    fs = [c["f"] for c in cal]
    aa = [c["a_s"] for c in cal]
    lines += [
        "",
        f"Mean over seeds: f = {statistics.fmean(fs):.4f}, a = {statistics.fmean(aa) * 1e3:.2f} ms. "
        f"fedsim's defaults: f = {DEFAULT_BANDWIDTH_FACTOR}, overhead = "
        f"{DEFAULT_MESSAGE_OVERHEAD_S * 1e3:.1f} ms.",
        "",
        "Errors per message, |simulated − measured| / measured: median, p90 and worst as mean ± "
        "std over the seeds; the worst message of all seeds; share of all messages within 5 % "
        "and 15 %.",
        "",
        "| model settings | f | latency | overhead | median | p90 | worst | worst of all | "
        "worst case | within 5 % | within 15 % |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for key, setting in settings.items():
        per_seed = [summary["errors_by_seed"][str(s)][key] for s in seeds]
        pooled = summary["errors"][key]
        f_s, lat_s, oh_s = _setting_label(key, setting, cal)
        lines.append(
            f"| {names[key]} | {f_s} | {lat_s} | {oh_s} | "
            f"{_mean_std([p['median_abs_error'] for p in per_seed])} | "
            f"{_mean_std([p['p90_abs_error'] for p in per_seed])} | "
            f"{_mean_std([p['worst_abs_error'] for p in per_seed])} | "
            f"{pooled['worst_error'] * 100:+.2f} % | {pooled['worst']} | "
            f"{pooled['within_5pct'] * 100:.0f} % | {pooled['within_15pct'] * 100:.0f} % |"
        )
    lines += ["", "**Targets** (median ≤ 5 %, worst ≤ 15 %, issue 19):", ""]
    for key in settings:
        per_seed = [summary["errors_by_seed"][str(s)][key] for s in seeds]
        word, why = verdict(per_seed)
        med = ", ".join(_pct(p["median_abs_error"]) for p in per_seed)
        worst = ", ".join(_pct(p["worst_abs_error"]) for p in per_seed)
        lines.append(
            f"- {names[key]}: **{word}** ({why}): median per seed {med}; worst per seed {worst}."
        )
    groups: dict[str, list[dict]] = {}
    for r in rs:
        groups.setdefault(group_of(r), []).append(r)
    for r in rs:
        groups.setdefault(size_of(r), []).append(r)
    keys = list(settings)
    lines += [
        "",
        "By group, all seeds pooled (median / worst absolute error):",
        "",
        "| group | messages | " + " | ".join(names[k] for k in keys) + " |",
        "|---|---:|" + "---|" * len(keys),
    ]
    for g, members in groups.items():
        cells = []
        for k in keys:
            e = [abs(r[f"err_{k}"]) for r in members]
            cells.append(f"{_pct(statistics.median(e))} / {_pct(max(e))}")
        lines.append(f"| {g} | {len(members)} | " + " | ".join(cells) + " |")
    first = seeds[0]
    where = f"`{summary['json']}`" if summary.get("json") else "the JSON written by `--json`"
    lines += [
        "",
        f"Full table of seed {first} (every seed's rows and the raw calibration are in {where}). "
        "Device rates and server capacity in Mbit/s, sizes in MB of tensor data (the model is "
        "given the exact wire bytes), start = measured send time relative to the case's first "
        "send.",
        "",
        "| case | srv Mbit/s | dev | dev Mbit/s | MB | start s | measured s | sim (defaults) s "
        "| error | sim (calibrated) s | error |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rs:
        if r["seed"] != first:
            continue
        lines.append(
            f"| {r['case']} | {r['server_mbit']:.1f} | {r['device']} | {r['rate_mbit']:.1f} | "
            f"{r['mb']:.2f} | {r['start_s']:.2f} | {r['measured_s']:.3f} | "
            f"{r['sim_defaults']:.3f} | {r['err_defaults'] * 100:+.1f} % | "
            f"{r['sim_calibrated']:.3f} | {r['err_calibrated'] * 100:+.1f} % |"
        )
    lines.append(END)
    return "\n".join(lines)


def write_page(path: Path, section: str) -> None:
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path}: no {BEGIN} ... {END} block to replace")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(head + section + tail)


# ---- the run ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="fewer cases (about 2 minutes a seed)")
    p.add_argument("--seeds", default="1,2,3", help="comma-separated seeds of the random cases")
    p.add_argument("--json", help="write rows and summary as JSON")
    p.add_argument(
        "--page", help="rewrite this page's generated block (docs/network-validation.md)"
    )
    p.add_argument(
        "--no-realtime", action="store_true", help="do not run the timed process SCHED_FIFO"
    )
    p.add_argument("--cc", help="TCP congestion control in the namespace (default: inherited)")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if not seeds:
        p.error("--seeds needs at least one seed")
    if not cli_can_run():
        return 0
    rt = not args.no_realtime
    t_start = time.monotonic()
    load_before = os.getloadavg()
    fixed = {
        "defaults": (DEFAULT_BANDWIDTH_FACTOR, None, DEFAULT_MESSAGE_OVERHEAD_S),
        "htb": (HTB_OVERHEAD_FACTOR, None, 0.0),
        "old_defaults": (SIMGRID_BANDWIDTH_FACTOR, None, 0.0),
    }
    rs: list[dict] = []
    cal_by_seed: list[dict] = []
    cal_rows: list[dict] = []
    results_all: list[CaseResult] = []
    with Namespace(tcp_cc=args.cc) as ns:
        for seed in seeds:
            cal = [run_case(ns, c, realtime=rt) for c in calibration_cases()]
            c = fit(cal) | {"cases": len(cal)}
            cal_by_seed.append(c)
            cal_rows += calibration_rows(cal, seed)
            print(
                f"seed {seed} calibration: f = {c['f']:.4f}, overhead a = {c['a_raw_s'] * 1e3:.2f} ms",
                file=sys.stderr,
            )
            settings = {"defaults": fixed["defaults"], "calibrated": (c["f"], None, c["a_s"])}
            settings |= {k: fixed[k] for k in ("htb", "old_defaults")}
            results = []
            for case in sweep_cases(seed, args.quick):
                r = run_case(ns, case, realtime=rt)
                results.append(r)
                print(
                    f"seed {seed} {case.name:24s} worst (defaults) "
                    f"{max(abs(e) for e in r.errors) * 100:5.1f} %  load {os.getloadavg()[0]:.1f}",
                    file=sys.stderr,
                )
            rs += rows(results, settings, seed)
            results_all += results
    seconds = time.monotonic() - t_start
    settings_shown = {
        "defaults": fixed["defaults"],
        "calibrated": (statistics.fmean(c["f"] for c in cal_by_seed), None, None),
        "htb": fixed["htb"],
        "old_defaults": fixed["old_defaults"],
    }
    command = "python benchmarks/netns_sweep.py " + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:])
    )
    summary = {
        "settings": settings_shown,
        "seeds": seeds,
        "calibration": cal_by_seed,
        "errors": {k: stats(rs, k) for k in settings_shown},
        "errors_by_seed": {
            str(s): {k: stats([r for r in rs if r["seed"] == s], k) for k in settings_shown}
            for s in seeds
        },
        "n_messages": len(rs),
        "n_cases": len(results_all),
        "tcp_cc": results_all[0].tcp_cc,
        "median_rtt_s": statistics.median(r.rtt_s for r in results_all),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "ncpu": os.cpu_count(),
        "seconds": seconds,
        "quick": args.quick,
        "date": datetime.date.today().isoformat(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "command": command.strip() + "   # as root",
        "json": args.json,
    }
    section = page_section(summary, rs)
    print(section)
    if args.json:
        with open(args.json, "w") as fh:
            # One line per row: small enough to keep beside the page, still diffable.
            fh.write('{"summary": ' + json.dumps(summary, indent=1) + ',\n"rows": [\n')
            fh.write(",\n".join(json.dumps(r) for r in rs))
            fh.write('\n],\n"calibration_rows": [\n')
            fh.write(",\n".join(json.dumps(r) for r in cal_rows))
            fh.write("\n]}\n")
    if args.page:
        write_page(Path(args.page), section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
