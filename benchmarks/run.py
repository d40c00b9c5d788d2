"""fedsim's performance suite: every figure of PERFORMANCE.md in one command.

    python benchmarks/run.py                  # everything; writes benchmarks/results.json
    python benchmarks/run.py --quick          # smoke test: tiny sizes, no file unless --json
    python benchmarks/run.py --only codecs transport_vs_raw_zmq
    python benchmarks/run.py --profile prof/  # also a cProfile of each benchmark

Prints a table (figure, value, target, met) and writes a JSON file: each figure's value,
target, whether it was met and its raw measurements, plus the date, the command, the
machine (cores, CPU, memory) and the load average before and after. Every figure is a ratio
of two things measured side by side, so it means something on a shared, noisy machine;
the load average says how noisy it was.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import importlib
import json
import os
import platform
import pstats
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# benchmark name -> (module, figures it produces), in running order
BENCHES: dict[str, tuple[str, tuple[str, ...]]] = {
    "codecs": (
        "bench_codecs",
        (
            "encode_q4_vs_memcpy",
            "decode_q4_vs_memcpy",
            "encode_q4_stochastic_vs_memcpy",
            "encode_top1pct_ef_vs_memcpy",
            "wire_efficiency",
        ),
    ),
    "des": ("bench_des", ("des_events_per_s",)),
    "transport": ("bench_transport", ("transport_vs_raw_zmq",)),
    "overhead": ("bench_overhead", ("overhead_inproc",)),
    "workers": ("bench_workers", ("workers2_efficiency",)),
    "async": ("bench_async", ("async_workers2_efficiency",)),
    "population": ("bench_population", ("population_100k_rss",)),
    "flower": ("bench_flower", ("flower_vs_fedsim",)),
    "batched": ("bench_batched", ("batched_vs_sequential",)),
}
FIGURES = {fig: bench for bench, (_, figs) in BENCHES.items() for fig in figs}
DEFAULT_JSON = HERE / "results.json"


def parse_target(target: object, raw: dict) -> tuple[str, float] | None:
    """'<= 1.1' / '>= 0.85' / '< 1.0' / a bare number (direction in raw) -> (op, bound)."""
    if isinstance(target, (int, float)):
        return str(raw.get("direction", "<=")), float(target)
    text = str(target).strip()
    for op in ("<=", ">=", "<", ">"):
        if text.startswith(op):
            return op, float(text[len(op) :])
    return None


def is_met(value: float | None, target: object, raw: dict) -> bool | None:
    t = parse_target(target, raw)
    if value is None or t is None:
        return None
    op, bound = t
    return {
        "<=": value <= bound,
        ">=": value >= bound,
        "<": value < bound,
        ">": value > bound,
    }[op]


def run_bench(name: str, quick: bool, profile_dir: Path | None) -> dict[str, dict]:
    """Run one benchmark in this process; failures become figures with an `error`."""
    module_name, figures = BENCHES[name]
    t0 = time.perf_counter()
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        note = f"benchmark module {module_name} not available: {e}"
        return {f: {"value": None, "target": None, "skipped": note, "raw": {}} for f in figures}
    prof = cProfile.Profile() if profile_dir else None
    try:
        if prof:
            prof.enable()
        out = module.run(quick)
    except Exception as e:
        out = {
            f: {
                "value": None,
                "target": None,
                "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(),
                "raw": {},
            }
            for f in figures
        }
    finally:
        if prof:
            prof.disable()
            profile_dir.mkdir(parents=True, exist_ok=True)
            prof.dump_stats(profile_dir / f"{name}.prof")
            with open(profile_dir / f"{name}.txt", "w") as fh:
                pstats.Stats(prof, stream=fh).sort_stats("cumulative").print_stats(40)
        gc.collect()
    seconds = time.perf_counter() - t0
    for fig in out.values():
        target = fig.get("target")
        raw = fig.get("raw") or {}
        if isinstance(target, (int, float)):
            fig["target"] = f"{raw.get('direction', '<=')} {target}"
        fig["met"] = is_met(fig.get("value"), target, raw)
        fig["bench_seconds"] = seconds
        fig["measured"] = {
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "load_avg": list(os.getloadavg()),
        }
    return out


def machine() -> dict:
    info = {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["mem_gib"] = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    for mod in ("numpy", "torch", "zmq", "simpy"):
        try:
            info[mod] = importlib.import_module(mod).__version__
        except Exception:
            pass
    return info


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def print_table(figures: dict[str, dict]) -> None:
    rows = [("figure", "value", "target", "met")]
    notes = []
    for name, fig in figures.items():
        met = {True: "yes", False: "NO", None: "-"}[fig.get("met")]
        if fig.get("skipped"):
            met = "skipped"
            notes.append(f"{name}: {fig['skipped']}")
        if fig.get("error"):
            met = "error"
            notes.append(f"{name}: {fig['error']}")
        unit = " GiB" if fig.get("raw", {}).get("unit") == "GiB" else ""
        rows.append((name, _fmt(fig.get("value")) + unit, _fmt(fig.get("target")), met))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for n in notes:
        print(f"note: {n}")


def select(only: list[str] | None) -> list[str]:
    if not only:
        return list(BENCHES)
    chosen = []
    for item in only:
        bench = item if item in BENCHES else FIGURES.get(item)
        if bench is None:
            known = ", ".join([*BENCHES, *FIGURES])
            raise SystemExit(f"run.py: --only {item}: unknown (choose from {known})")
        if bench not in chosen:
            chosen.append(bench)
    return [b for b in BENCHES if b in chosen]


def standalone(
    doc: str,
    run: Callable[[bool], dict[str, dict]],
    describe: Callable[[dict], str],
    argv: list[str] | None = None,
    hidden: Callable[[argparse.Namespace], int | None] | None = None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """The command line of one benchmark file: [--quick] [--json PATH], one line per figure."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    if extra:
        extra(ap)
    args = ap.parse_args(argv)
    if hidden is not None:
        code = hidden(args)
        if code is not None:
            return code
    res = run(args.quick)
    for name, fig in res.items():
        if fig.get("skipped"):
            print(f"{name}: skipped: {fig['skipped']}")
        else:
            print(f"{name}: {fig['value']:.3f} (target {fig['target']})  {describe(fig['raw'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test, not a result")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="benchmarks or figures to run")
    ap.add_argument(
        "--json",
        metavar="PATH",
        help=f"results file (default {DEFAULT_JSON.relative_to(HERE.parent)} for a full run, "
        "none for --quick); with --only, the chosen figures are updated in it",
    )
    ap.add_argument("--profile", metavar="DIR", help="write a cProfile of each benchmark here")
    ap.add_argument("--note", help="free text kept in the results file (e.g. what else ran)")
    args = ap.parse_args(argv)
    benches = select(args.only)
    json_path = Path(args.json) if args.json else (None if args.quick else DEFAULT_JSON)
    profile_dir = Path(args.profile) if args.profile else None

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    figures: dict[str, dict] = {}
    for name in benches:
        print(f"[{name}] ...", file=sys.stderr, flush=True)
        figures.update(run_bench(name, args.quick, profile_dir))
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()
    print_table(figures)
    print(
        f"{len(figures)} figures in {wall:.0f} s; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after, on {os.cpu_count()} cores"
    )

    if json_path is not None:
        doc = {
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": shlex.join(["python", "benchmarks/run.py", *(argv or sys.argv[1:])]),
            "quick": args.quick,
            "git_commit": git_commit(),
            "machine": machine(),
            "load_avg": {"before": list(load_before), "after": list(load_after)},
            "note": args.note,
            "wall_s": wall,
            "values": {k: v.get("value") for k, v in figures.items()},
            "figures": figures,
        }
        if args.only and json_path.exists():
            # update the chosen figures of the earlier run; its own header stays as it was
            try:
                old = json.loads(json_path.read_text())
            except (OSError, ValueError):
                old = None
            if old is not None:
                update = {k: doc[k] for k in ("date", "command", "load_avg", "note", "wall_s")}
                old["values"] = {**old.get("values", {}), **doc["values"]}
                old["figures"] = {**old.get("figures", {}), **doc["figures"]}
                old["partial_updates"] = [
                    *old.get("partial_updates", []),
                    {**update, "figures": list(figures)},
                ]
                doc = old
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        print(f"wrote {json_path}")
    return 1 if any(f.get("error") for f in figures.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
