"""netns_sweep: fedsim's flow-level network model against real TCP on shaped loopback.

Needs root, ``ip`` and ``tc`` (see tcp_harness.py, next to this file). Builds one private network
namespace, shapes its loopback with htb (server link = parent class, one child class per
device with the device's rate as ceiling), sends real fedsim wire-format messages over
ZeroMQ tcp, and compares per-message completion times with fedsim's model:

1. calibration: single flows at 5, 20 and 100 Mbit/s, 0.2-8 MB; a least-squares fit of
   ``t = a + wire_bits / (f · rate)`` gives the usable-bandwidth factor ``f`` and a fixed
   per-message delay ``a``;
2. the sweep: single flows (2-100 Mbit/s, 0.1-50 MB) and 2-16 concurrent devices with
   heterogeneous rates (log-uniform 2-100 Mbit/s), sizes 0.1-50 MB, behind a server link
   that is (or is not) the bottleneck, starting together or staggered.

Every case is simulated three ways from the measured send times and real wire bytes:
the calibrated model (f, a), the analytic htb setting (f = 1448/1514, latency = RTT/2)
and fedsim's defaults (f = 0.97, latency = RTT/2).

    sudo python benchmarks/netns_sweep.py [--quick] [--json PATH] [--markdown PATH] [--seed N] [--cc cubic]

docs/network-validation.md is generated from ``--markdown`` output.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time

from fedsim.network.links import DEFAULT_BANDWIDTH_FACTOR
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


def calibration_cases() -> list[Case]:
    cases = []
    for rate in (5, 20, 100):
        for mb in (0.2, 1, 3, 8):
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


def fit(results: list[CaseResult]) -> tuple[float, float]:
    """Least squares ``t = a + x / f`` with ``x = wire_bits / rate``: returns (f, a)."""
    xs = [b * 8 / r.case.device_bps[0] for r in results for b in r.wire_bytes]
    ys = [m for r in results for m in r.measured_s]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    a = my - slope * mx
    return 1.0 / slope, max(a, 0.0)


def rows(results: list[CaseResult], settings: dict[str, tuple[float, float | None]]) -> list[dict]:
    out = []
    for r in results:
        sims = {}
        for key, (f, lat) in settings.items():
            latency = r.rtt_s / 2 if lat is None else lat
            sims[key] = simulate(
                r.case, r.send_s, r.wire_bytes, bandwidth_factor=f, latency_s=latency
            )
        for k, t in enumerate(r.case.transfers):
            m = r.measured_s[k]
            row = {
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
        "worst": f"{worst['case']} device {worst['device']}",
        "within_5pct": sum(e <= 0.05 for e in errs) / len(errs),
        "within_15pct": sum(e <= 0.15 for e in errs) / len(errs),
    }


def markdown(rs: list[dict], summary: dict) -> str:
    lines = [
        "| case | srv Mbit/s | dev | dev Mbit/s | MB | start s | measured s | sim s | error | sim (defaults) | error |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rs:
        lines.append(
            f"| {r['case']} | {r['server_mbit']:.1f} | {r['device']} | {r['rate_mbit']:.1f} | "
            f"{r['mb']:.2f} | {r['start_s']:.2f} | {r['measured_s']:.3f} | "
            f"{r['sim_calibrated']:.3f} | {r['err_calibrated'] * 100:+.1f} % | "
            f"{r['sim_defaults']:.3f} | {r['err_defaults'] * 100:+.1f} % |"
        )
    lines.append("")
    lines.append(
        "| model settings | f | latency | median abs error | p90 | worst | worst case | within 5 % | within 15 % |"
    )
    lines.append("|---|---:|---|---:|---:|---:|---|---:|---:|")
    for key, s in summary["errors"].items():
        f, lat = summary["settings"][key]
        lat_s = "RTT/2" if lat is None else f"{lat * 1e3:.2f} ms"
        lines.append(
            f"| {key} | {f:.4f} | {lat_s} | {s['median_abs_error'] * 100:.2f} % | "
            f"{s['p90_abs_error'] * 100:.2f} % | {s['worst_abs_error'] * 100:.2f} % | {s['worst']} | "
            f"{s['within_5pct'] * 100:.0f} % | {s['within_15pct'] * 100:.0f} % |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="fewer cases (about 2 minutes)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", help="write rows and summary as JSON")
    p.add_argument("--markdown", help="write the table as Markdown")
    p.add_argument(
        "--no-realtime", action="store_true", help="do not run the timed process SCHED_FIFO"
    )
    p.add_argument("--cc", help="TCP congestion control in the namespace (default: inherited)")
    args = p.parse_args(argv)
    if not cli_can_run():
        return 0
    rt = not args.no_realtime
    t_start = time.monotonic()
    load_before = os.getloadavg()
    with Namespace(tcp_cc=args.cc) as ns:
        cal = [run_case(ns, c, realtime=rt) for c in calibration_cases()]
        f, a = fit(cal)
        print(f"calibration: f = {f:.4f}, fixed delay a = {a * 1e3:.2f} ms", file=sys.stderr)
        results = []
        for c in sweep_cases(args.seed, args.quick):
            r = run_case(ns, c, bandwidth_factor=f, latency_s=a, realtime=rt)
            results.append(r)
            worst = max(abs(e) for e in r.errors)
            print(
                f"{c.name:24s} worst {worst * 100:5.1f} %  load {os.getloadavg()[0]:.1f}",
                file=sys.stderr,
            )
    settings = {
        "calibrated": (f, a),
        "htb": (HTB_OVERHEAD_FACTOR, None),
        "defaults": (DEFAULT_BANDWIDTH_FACTOR, None),
    }
    rs = rows(results, settings)
    summary = {
        "settings": settings,
        "calibration": {"f": f, "a_s": a, "cases": len(cal)},
        "errors": {k: stats(rs, k) for k in settings},
        "n_messages": len(rs),
        "n_cases": len(results),
        "tcp_cc": results[0].tcp_cc,
        "median_rtt_s": statistics.median(r.rtt_s for r in results),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "ncpu": os.cpu_count(),
        "seconds": time.monotonic() - t_start,
        "seed": args.seed,
        "quick": args.quick,
    }
    md = markdown(rs, summary)
    print(md)
    print(json.dumps({k: v for k, v in summary.items() if k != "settings"}, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"summary": summary, "rows": rs}, fh, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
