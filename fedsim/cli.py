"""The `fedsim` command. The one place that turns errors into exit codes and messages.

Bad input (a scenario file, a flag, a run directory) exits 2 with one line naming the file,
the field and the problem; never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        raise UsageError(f"{self.prog}: {message}")


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return str(n)


def _check_out_dir(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not force:
        raise UsageError(f"--out {out}: directory is not empty (pass --force to overwrite it)")


def _progress_runner(
    scenario: Any, out: Path, quiet: bool, label: str = "", resume: bool = False
) -> dict:
    from fedsim.runtime.coordinator import Coordinator

    if quiet:
        return Coordinator(scenario, out, resume=resume).run()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(label or scenario.name, total=scenario.rounds, info="")
        state = {"acc": None}

        def update(row: dict) -> None:
            if row.get("test_accuracy") is not None:
                state["acc"] = row["test_accuracy"]
            acc = "-" if state["acc"] is None else f"{state['acc']:.3f}"
            info = (
                f"sim {row['sim_time']:.1f}s  acc {acc}  "
                f"up {_fmt_bytes(row['bytes_up_total'])}  down {_fmt_bytes(row['bytes_down_total'])}"
            )
            bar.update(task, completed=row["round"], info=info)

        return Coordinator(scenario, out, progress=update, resume=resume).run()


def cmd_run(args: argparse.Namespace) -> int:
    from fedsim.scenario import load_scenario, variant_scenarios

    overrides = list(args.set or [])
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.rounds is not None:
        overrides.append(f"rounds={args.rounds}")
    if args.transport is not None:
        overrides.append(f"runtime.transport={args.transport!r}".replace("'", '"'))
    if args.workers is not None:
        overrides.append(f"runtime.workers={args.workers}")
    if args.executor is not None:
        overrides.append(f'runtime.executor="{args.executor}"')
    scenario = load_scenario(args.scenario, overrides)
    _validate_deep(scenario, args.scenario)
    if args.out:
        out = Path(args.out)
    elif args.resume:
        raise UsageError("--resume needs --out DIR (the run directory to continue)")
    else:
        out = Path("runs") / f"{Path(args.scenario).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not args.resume:
        _check_out_dir(out, args.force)
    elif scenario.runtime.checkpoint_every == 0 and not scenario.variants:
        raise UsageError(
            f"--resume: {args.scenario} has runtime.checkpoint_every = 0 (no checkpoints to resume from)"
        )

    if args.sweep:
        scenario = _add_sweep_variants(scenario, args.sweep, args.scenario)
    runs = (
        variant_scenarios(scenario, file=args.scenario) if scenario.variants else [("", scenario)]
    )
    if args.variant:
        names = {n for n, _ in runs}
        unknown = [v for v in args.variant if v not in names]
        if unknown:
            raise UsageError(
                f"--variant {unknown[0]}: not in {args.scenario} (has: {', '.join(sorted(names))})"
            )
        runs = [(n, s) for n, s in runs if n in args.variant]
    summaries = {}
    for name, sc in runs:
        _validate_deep(sc, args.scenario, variant=name)
        target = out / name if name else out
        with _data_errors_name(args.scenario):
            if args.resume:
                _check_same_scenario(sc, target)
            if args.resume and (target / "summary.json").exists():
                summary = json.loads((target / "summary.json").read_text())  # finished already
            else:
                summary = _progress_runner(
                    sc, target, args.quiet, label=name or sc.name, resume=args.resume
                )
        summaries[name] = summary
        if not args.quiet or args.summary:
            acc = summary["best_accuracy"]
            print(
                f"{name or sc.name}: best_accuracy={acc if acc is None else round(acc, 4)} "
                f"sim_time={summary['sim_time_total']:.1f}s wall={summary['wall_time_total']:.1f}s "
                f"up={_fmt_bytes(summary['bytes_up_total'])} down={_fmt_bytes(summary['bytes_down_total'])} "
                f"-> {target}"
            )
    if len(runs) > 1:
        from fedsim.report.compare import build_comparison, render_compare_table, write_comparison

        comp = build_comparison([out / n for n, _ in runs], scenario.eval.target_accuracy)
        md = write_comparison(comp, out, stem="comparison")
        if not args.quiet:
            print(render_compare_table(comp.rows, "table"), end="")
        print(f"comparison: {md} (+ comparison.json)")
    return 0


@contextlib.contextmanager
def _data_errors_name(file: str):
    """Data problems surface while loading; say which scenario file asked for the data."""
    from fedsim.errors import DataError, ScenarioError

    try:
        yield
    except DataError as e:
        raise ScenarioError(str(e), file=file) from None


def _add_sweep_variants(scenario: Any, sweeps: list[str], file: str) -> Any:
    """`--sweep key=v1,v2` (repeatable): the grid of all combinations, as variants."""
    import itertools
    import re

    from fedsim.scenario import parse_override
    from fedsim.scenario.load import apply_overrides, validate_doc

    axes = []
    for item in sweeps:
        if "=" not in item:
            raise UsageError(f"--sweep {item!r}: expected key=v1,v2,...")
        key, values = item.split("=", 1)
        vals = [v for v in values.split(",") if v != ""]
        if not vals:
            raise UsageError(f"--sweep {item!r}: no values")
        axes.append([(key.strip(), parse_override(f"{key.strip()}={v}")[1], v) for v in vals])
    variants = [v.model_dump() for v in scenario.variants]
    for combo in itertools.product(*axes):
        name = "_".join(f"{k.split('.')[-1]}-{raw}" for k, _, raw in combo)
        name = re.sub(r"[^A-Za-z0-9_.+-]", "-", name)
        variants.append({"name": name, **apply_overrides({}, [(k, v) for k, v, _ in combo])})
    doc = {**scenario.model_dump(exclude={"variants"}), "variants": variants}
    return validate_doc(doc, file=file)


def _check_same_scenario(scenario: Any, run_dir: Path) -> None:
    from fedsim.scenario import dump_scenario

    saved = run_dir / "scenario.toml"
    if saved.exists() and saved.read_text() != dump_scenario(scenario):
        raise UsageError(
            f"--resume {run_dir}: a different scenario ran there (the resolved scenario differs from {saved}); "
            "resume with the same file and overrides"
        )


def _validate_deep(scenario: Any, file: str, variant: str = "") -> None:
    """Checks that need the registries (algorithm options, model, dataset, codecs)."""
    from fedsim.scenario.checks import check_scenario

    check_scenario(scenario, file=f"{file}[variants.{variant}]" if variant else file)


def cmd_validate(args: argparse.Namespace) -> int:
    from fedsim.runtime.build import load_data
    from fedsim.scenario import load_scenario, variant_scenarios

    scenario = load_scenario(args.scenario, args.set or [])
    _validate_deep(scenario, args.scenario)
    with _data_errors_name(args.scenario):
        load_data(scenario)
    for name, sc in variant_scenarios(scenario, file=args.scenario):
        _validate_deep(sc, args.scenario, variant=name)
        with _data_errors_name(args.scenario):
            load_data(sc)
    n = len(scenario.variants)
    print(
        f"{args.scenario}: ok ({scenario.rounds} rounds, {scenario.clients.count} clients"
        f"{f', {n} variants' if n else ''})"
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from fedsim.algorithms import describe_algorithms
    from fedsim.data import describe_datasets
    from fedsim.data.partition import describe_partitioners
    from fedsim.models import describe_models

    sections = {
        "models": describe_models(),
        "datasets": describe_datasets(),
        "partitioners": describe_partitioners(),
        "algorithms": describe_algorithms(),
    }
    try:
        from fedsim.network.devices import describe_profiles

        sections["devices"] = describe_profiles()
    except ImportError:
        pass
    sections["codecs"] = [
        ("fp32 | fp16 | bf16", "floats: fp32 exact; fp16 and bf16 rounded to nearest even"),
        (
            "q<1..16>[:per=channel|:bucket=B][:stochastic]",
            "uniform k-bit codes + fp32 min/step per tensor, channel or bucket",
        ),
        ("qsgd[:s=S][:bucket=B]", "QSGD: norm + sign + s stochastic levels"),
        ("sign[:per=...|:bucket=B]", "1 bit per value + scale"),
        (
            "topk:K | randk:K [:mask=auto|bitmap|index|golomb]",
            "sparsify (K fraction or count); mask encoding, auto = smallest",
        ),
        ("SPARSE+DENSE", "compose, e.g. topk:0.01+q8 (kept values quantized)"),
        ("ef(SPEC)", "error feedback: the residual stays with the client and is added next round"),
    ]
    wanted = args.what or list(sections)
    console = Console()
    for what in wanted:
        if what not in sections:
            raise UsageError(
                f"fedsim list: unknown section {what!r} (choose from {', '.join(sections)})"
            )
        table = Table(title=what, show_header=False, title_justify="left")
        for name, doc in sections[what]:
            table.add_row(name, doc)
        console.print(table)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from fedsim.report.report import report_command

    return report_command(args)


def cmd_compare(args: argparse.Namespace) -> int:
    from fedsim.report.compare import compare_command

    return compare_command(args)


def cmd_traffic(args: argparse.Namespace) -> int:
    from fedsim.report.traffic import traffic_command

    return traffic_command(args)


def cmd_worker(args: argparse.Namespace) -> int:
    from fedsim.runtime.executors.actor import run_worker

    return run_worker(
        args.connect,
        keys_dir=args.keys,
        threads=args.threads,
        heartbeat=args.heartbeat,
        timeout=args.timeout,
    )


def cmd_keys(args: argparse.Namespace) -> int:
    from fedsim.network.transport import generate_keys

    for p in generate_keys(args.dir):
        print(p)
    print(
        f'set runtime.curve_keys = "{args.dir}" on the coordinator; give workers --keys {args.dir}'
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="fedsim",
        description="Federated-learning simulator with exact bytes and simulated time.",
    )
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    r = sub.add_parser("run", help="run a scenario file")
    r.add_argument("scenario")
    r.add_argument("--out", help="run directory (default runs/<scenario>-<time>)")
    r.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a scenario key (repeatable)"
    )
    r.add_argument("--seed", type=int)
    r.add_argument("--rounds", type=int)
    r.add_argument("--transport", choices=["inproc", "ipc", "tcp"])
    r.add_argument("--workers", type=int)
    r.add_argument("--executor", choices=["zmq", "ray"], help="who runs clients (default: zmq)")
    r.add_argument("--variant", action="append", help="run only this variant (repeatable)")
    r.add_argument(
        "--sweep",
        action="append",
        metavar="KEY=V1,V2",
        help="grid over values of a key (repeatable); each combination runs as a variant",
    )
    r.add_argument("--force", action="store_true", help="overwrite a non-empty --out directory")
    r.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument(
        "--summary", action="store_true", help="print the one-line summary even with --quiet"
    )
    r.set_defaults(fn=cmd_run)

    v = sub.add_parser("validate", help="check a scenario file without running it")
    v.add_argument("scenario")
    v.add_argument("--set", action="append", metavar="KEY=VALUE")
    v.set_defaults(fn=cmd_validate)

    ls = sub.add_parser(
        "list", help="list models, datasets, partitioners, algorithms, devices, codecs"
    )
    ls.add_argument("what", nargs="*")
    ls.set_defaults(fn=cmd_list)

    w = sub.add_parser("worker", help="run a worker process that trains clients for a coordinator")
    w.add_argument(
        "--connect", required=True, metavar="ENDPOINT", help="e.g. tcp://host:5555 or ipc:///path"
    )
    w.add_argument("--keys", help="CURVE key folder from `fedsim keys generate`")
    w.add_argument(
        "--threads", type=int, default=1, help="torch threads (must match the coordinator's)"
    )
    w.add_argument("--heartbeat", type=float, default=1.0)
    w.add_argument("--timeout", type=float, default=10.0)
    w.set_defaults(fn=cmd_worker)

    k = sub.add_parser("keys", help="CURVE keys for tcp beyond localhost")
    ksub = k.add_subparsers(dest="keys_command", parser_class=_Parser, required=True)
    kg = ksub.add_parser("generate", help="write server and worker key pairs into DIR")
    kg.add_argument("dir")
    kg.set_defaults(fn=cmd_keys)

    t = sub.add_parser("traffic", help="summaries and filters over a run's traffic.jsonl")
    t.add_argument("run_dir")
    t.add_argument("--by", choices=["round", "client", "kind", "profile"], action="append")
    t.add_argument("--round", type=int, action="append")
    t.add_argument("--client", type=int, action="append")
    t.add_argument("--kind", choices=["model", "update", "control"], action="append")
    t.add_argument("--format", choices=["table", "csv", "json"], default="table")
    t.set_defaults(fn=cmd_traffic)

    rp = sub.add_parser("report", help="plots/, report.md and report.html for a run directory")
    rp.add_argument("run_dir")
    rp.set_defaults(fn=cmd_report)

    cp = sub.add_parser(
        "compare", help="overlaid curves and time/bytes-to-target table for runs or experiments"
    )
    cp.add_argument("run_dirs", nargs="+")
    cp.add_argument("--out", help="output folder (default <first run's parent>/compare)")
    cp.add_argument(
        "--target", type=float, help="target accuracy (default 0.95 x the lowest best accuracy)"
    )
    cp.add_argument("--format", choices=["table", "csv", "json"], default="table")
    cp.set_defaults(fn=cmd_compare)
    return p


def main(argv: list[str] | None = None) -> int:
    from fedsim.errors import FedsimError

    try:
        from fedsim.codecs.wire import WireError
    except ImportError:  # pragma: no cover
        WireError = ValueError  # type: ignore[assignment,misc]

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.version:
            import fedsim

            print(f"fedsim {fedsim.__version__}")
            return 0
        if not getattr(args, "fn", None):
            parser.print_help()
            return EXIT_BAD_INPUT
        return int(args.fn(args) or 0)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except FedsimError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except WireError as e:
        print(f"error: malformed message: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
