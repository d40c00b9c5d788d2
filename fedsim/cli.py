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

from fedsim.cli_errors import EXIT_BAD_INPUT, guarded, raise_broken_pipe
from fedsim.errors import FedsimError


class UsageError(FedsimError):
    """A bad flag or argument: one line, exit 2 (fedsim/cli_errors.py)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        raise UsageError(f"{self.prog}: {message}")


def _fmt_bytes(n: float) -> str:
    from fedsim.progress import fmt_bytes

    return fmt_bytes(n)


def _check_out_dir(out: Path, force: bool, scenario_file: str) -> None:
    """Called holding the directory's lock: refuse an earlier run's outputs, or (--force)
    remove them, so no old report, plot or checkpoint sits beside the new run's logs."""
    from fedsim.runtime.outputs import clean_run_dir
    from fedsim.runtime.rundir_lock import LOCK_NAME

    if (out / "scenario.toml").resolve() == Path(scenario_file).resolve():
        raise UsageError(
            f"--out {out}: holds {scenario_file}, which the run would overwrite with the "
            "resolved scenario; choose another --out"
        )
    if any(p.name != LOCK_NAME for p in out.iterdir()):
        if not force:
            raise UsageError(f"--out {out}: directory is not empty (pass --force to overwrite it)")
        clean_run_dir(out)


def _progress_runner(
    scenario: Any,
    out: Path,
    quiet: bool,
    label: str = "",
    resume: bool = False,
    tensorboard: Path | None = None,
) -> dict:
    from fedsim.api import run_coordinator

    if quiet:
        return run_coordinator(scenario, out, resume=resume, tensorboard=tensorboard)
    from fedsim.progress import progress_bar

    with progress_bar(scenario.rounds, label or scenario.name) as update:
        return run_coordinator(
            scenario, out, progress=update, resume=resume, tensorboard=tensorboard
        )


def _parse_seeds(text: str) -> list[int]:
    """`--seeds 0,1,2`: distinct non-negative integers, in the order given."""
    seeds = []
    for item in (t.strip() for t in text.split(",")):
        try:
            seed = int(item)
        except ValueError:
            raise UsageError(
                f"--seeds {text}: {item!r} is not an integer (expected e.g. --seeds 0,1,2)"
            ) from None
        if seed < 0:
            raise UsageError(f"--seeds {text}: seed {seed} is negative (seeds are >= 0)")
        if seed in seeds:
            raise UsageError(f"--seeds {text}: seed {seed} is given twice")
        seeds.append(seed)
    return seeds


def cmd_run(args: argparse.Namespace) -> int:
    from fedsim.scenario import load_scenario

    if args.seeds is not None:
        args.seeds = _parse_seeds(args.seeds)
        if args.seed is not None:
            raise UsageError("--seed and --seeds: give one (--seeds runs once per seed)")
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
    from fedsim.runtime.rundir_lock import RunDirLock

    with RunDirLock(out):  # one run per directory, for the whole run (also --resume)
        return _run_in(args, scenario, out)


def _run_in(args: argparse.Namespace, scenario: Any, out: Path) -> int:
    from fedsim.scenario import variant_scenarios, with_seeds

    if args.sweep:
        scenario = _add_sweep_variants(scenario, args.sweep, args.scenario)
    runs = (
        variant_scenarios(scenario, file=args.scenario) if scenario.variants else [("", scenario)]
    )
    if args.variant:
        names = {n for n, _ in runs}
        unknown = [v for v in args.variant if v not in names]
        if unknown:
            has = f"has: {', '.join(sorted(names))}" if any(names) else "it has no variants"
            raise UsageError(f"--variant {unknown[0]}: not in {args.scenario} ({has})")
        runs = [(n, s) for n, s in runs if n in args.variant]
    for name, sc in runs:  # every variant is checked before anything is removed or run
        _validate_deep(sc, args.scenario, variant=name)
    runs = with_seeds(runs, args.seeds, file=args.scenario)
    if not args.resume:
        _check_out_dir(out, args.force, args.scenario)
    elif scenario.runtime.checkpoint_every == 0 and not scenario.variants and len(runs) == 1:
        raise UsageError(
            f"--resume: {args.scenario} has runtime.checkpoint_every = 0 (no checkpoints to resume from)"
        )

    summaries = {}
    for name, sc in runs:
        target = out / name if name else out
        with _data_errors_name(args.scenario):
            if args.resume:
                _check_same_scenario(sc, target)
            if args.resume and (target / "summary.json").exists():
                summary = json.loads((target / "summary.json").read_text())  # finished already
            else:
                tb = Path(args.tensorboard) / out.name / name if args.tensorboard else None
                summary = _progress_runner(
                    sc,
                    target,
                    args.quiet,
                    label=name or sc.name,
                    resume=args.resume,
                    tensorboard=tb,
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
        if summary.get("empty_rounds"):
            print(
                f"warning: {name or sc.name}: {summary['empty_rounds']} of "
                f"{summary.get('rounds_completed', summary['rounds'])} aggregations had no accepted "
                "update (deadline, dropouts or no client online)",
                file=sys.stderr,
            )
    diverged = [n or s.name for n, s in runs if summaries[n].get("status") == "diverged"]
    if diverged:
        first = summaries[next(n for n, s in runs if (n or s.name) == diverged[0])]
        print(
            f"error: {diverged[0]}: diverged at round {first.get('rounds_completed')} "
            '(non-finite training loss or weights); summary.json has status = "diverged"',
            file=sys.stderr,
        )
    if len(runs) > 1:
        from fedsim.report.compare import build_comparison, render_comparison, write_comparison

        comp = build_comparison([out / n for n, _ in runs], scenario.eval.target_accuracy)
        md = write_comparison(comp, out, stem="comparison")
        if not args.quiet:
            print(render_comparison(comp, "table"), end="")
        print(f"comparison: {md} (+ comparison.json)")
    return 3 if diverged else 0


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
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", name).lstrip("_.-") or "v"
        variants.append({"name": name, **apply_overrides({}, [(k, v) for k, v, _ in combo])})
    doc = {**scenario.model_dump(exclude={"variants"}), "variants": variants}
    return validate_doc(doc, file=file)


def _check_same_scenario(scenario: Any, run_dir: Path) -> None:
    from fedsim.scenario import dump_scenario

    saved = run_dir / "scenario.toml"
    if not saved.exists():
        return
    text, now = saved.read_text(), dump_scenario(scenario)
    if text != now:
        raise UsageError(
            f"--resume {run_dir}: a different scenario ran there (the resolved scenario differs from {saved}"
            f"{_scenario_diff(text, now)}); resume with the same file and overrides"
        )


def _scenario_diff(saved: str, now: str, limit: int = 3) -> str:
    """': key: A there, B now; ...' for the first keys that differ (empty if unreadable)."""
    import tomllib

    from fedsim.scenario.load import flatten

    try:
        a, b = dict(flatten(tomllib.loads(saved))), dict(flatten(tomllib.loads(now)))
    except tomllib.TOMLDecodeError:
        return ""
    missing = object()
    keys = [k for k in sorted(a.keys() | b.keys()) if a.get(k, missing) != b.get(k, missing)]

    def show(v: Any) -> str:
        return "unset" if v is missing else repr(v)

    parts = [f"{k}: {show(a.get(k, missing))} there, {show(b.get(k, missing))} now" for k in keys]
    if len(parts) > limit:
        parts = parts[:limit] + [f"{len(keys) - limit} more"]
    return ": " + "; ".join(parts) if parts else ""


def _validate_deep(scenario: Any, file: str, variant: str = "") -> None:
    """Checks that need the registries (algorithm options, model, dataset, codecs)."""
    from fedsim.scenario.checks import check_scenario

    check_scenario(scenario, file=f"{file}[variants.{variant}]" if variant else file)


def cmd_validate(args: argparse.Namespace) -> int:
    from fedsim.runtime.build import load_data, make_partitions
    from fedsim.scenario import load_scenario, variant_scenarios

    scenario = load_scenario(args.scenario, args.set or [])
    _validate_deep(scenario, args.scenario)
    with _data_errors_name(args.scenario):
        make_partitions(scenario, load_data(scenario))
    for name, sc in variant_scenarios(scenario, file=args.scenario):
        _validate_deep(sc, args.scenario, variant=name)
        with _data_errors_name(args.scenario):
            make_partitions(sc, load_data(sc))
    if args.show:
        from fedsim.scenario.show import show_scenario

        print(show_scenario(scenario), end="")
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
    from fedsim.plugins import with_origins
    from fedsim.scenario.shipped import describe_shipped

    sections = {
        "scenarios": describe_shipped(),
        "models": with_origins("model", describe_models()),
        "datasets": with_origins("dataset", describe_datasets()),
        "partitioners": describe_partitioners(),
        "algorithms": with_origins("algorithm", describe_algorithms()),
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
    console.on_broken_pipe = raise_broken_pipe  # type: ignore[method-assign]
    for what in wanted:
        if what not in sections:
            raise UsageError(
                f"fedsim list: unknown section {what!r} (choose from {', '.join(sections)})"
            )
        table = Table(title=what, show_header=False, title_justify="left")
        for row in sections[what]:  # (name, doc) or (name, origin, doc)
            table.add_row(*row)
        console.print(table)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from fedsim.scenario.shipped import copy_shipped

    for path in copy_shipped(args.dir, force=args.force):
        print(path)
    print(f"edit one, then: fedsim run {Path(args.dir) / 'quickstart.toml'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from fedsim.export import export_csv

    for path in export_csv(args.run_dir, args.out, force=args.force):
        print(path)
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
    from fedsim.scenario.endpoint import endpoint_problem

    problem = endpoint_problem(args.connect, bind=False)
    if problem:
        raise UsageError(f"--connect: {problem}")
    if args.threads < 1:
        raise UsageError(f"--threads {args.threads}: must be >= 1")
    if not 0 < args.heartbeat < float("inf"):
        raise UsageError(f"--heartbeat {args.heartbeat:g}: must be a positive number of seconds")
    if not 2 * args.heartbeat < args.timeout < float("inf"):
        raise UsageError(
            f"--timeout {args.timeout:g}: must exceed 2 x --heartbeat ({2 * args.heartbeat:g} s)"
        )

    return run_worker(
        args.connect,
        keys_dir=args.keys,
        threads=args.threads,
        heartbeat=args.heartbeat,
        timeout=args.timeout,
        quiet=args.quiet,
    )


def cmd_keys(args: argparse.Namespace) -> int:
    from fedsim.network import curve

    d = Path(args.dir)
    try:
        if args.keys_command == "generate":
            paths = curve.generate_keys(d, force=args.force)
            name = curve.FIRST_WORKER
        else:
            paths = curve.add_worker(d, args.name, force=args.force)
            name = args.name
    except curve.KeyFolderError as e:
        raise UsageError(f"fedsim keys {args.keys_command}: {e}") from None
    for p in paths:
        print(p)
    print(
        f'coordinator host: {d / curve.SERVER} (runtime.curve_keys = "{d / curve.SERVER}"); '
        f"worker host: {d / name} only (fedsim worker --keys {d / name}); "
        f"revoke: delete {d / curve.SERVER / curve.AUTHORIZED / (name + '.key')}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="fedsim",
        description="Federated-learning simulator with exact bytes and simulated time.",
    )
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    r = sub.add_parser("run", help="run a scenario file (or a shipped scenario by name)")
    r.add_argument(
        "scenario", help="a .toml file, or the name of a shipped one (see `fedsim list scenarios`)"
    )
    r.add_argument("--out", help="run directory (default runs/<scenario>-<time>)")
    r.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a scenario key (repeatable)"
    )
    r.add_argument("--seed", type=int, help="override seed (seeds everything in the run)")
    r.add_argument(
        "--seeds",
        metavar="S1,S2,...",
        help="repeat the run (each variant) once per seed into OUT/[VARIANT/]seed-N; "
        "the comparison gives mean ± std over the seeds",
    )
    r.add_argument("--rounds", type=int, help="override rounds (aggregations in async mode)")
    r.add_argument(
        "--transport",
        choices=["inproc", "ipc", "tcp"],
        help="ZeroMQ transport to the clients: in this process, or worker processes over ipc/tcp",
    )
    r.add_argument(
        "--workers",
        type=int,
        help="worker processes to spawn (ipc/tcp), or Ray actors (--executor ray)",
    )
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
    r.add_argument(
        "--tensorboard",
        metavar="DIR",
        help="log accuracy, loss, bytes and energy per round for TensorBoard into DIR/<run> "
        '(against rounds and simulated ms; pip install "fedsim[tensorboard]")',
    )
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument(
        "--summary", action="store_true", help="print the one-line summary even with --quiet"
    )
    r.set_defaults(fn=cmd_run)

    v = sub.add_parser("validate", help="check a scenario file without running it")
    v.add_argument("scenario", help="a .toml file, or the name of a shipped one")
    v.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a scenario key (repeatable)"
    )
    v.add_argument(
        "--show",
        action="store_true",
        help="print the resolved scenario (defaults filled in, SI values with their units)",
    )
    v.set_defaults(fn=cmd_validate)

    ls = sub.add_parser(
        "list",
        help="list shipped scenarios, models, datasets, partitioners, algorithms, devices, codecs",
    )
    ls.add_argument("what", nargs="*", help="sections to show (default: all)")
    ls.set_defaults(fn=cmd_list)

    i = sub.add_parser("init", help="copy the shipped scenario files into DIR to edit")
    i.add_argument("dir", help="folder to write the .toml files into (created if missing)")
    i.add_argument("--force", action="store_true", help="overwrite files that exist")
    i.set_defaults(fn=cmd_init)

    w = sub.add_parser("worker", help="run a worker process that trains clients for a coordinator")
    w.add_argument(
        "--connect", required=True, metavar="ENDPOINT", help="e.g. tcp://host:5555 or ipc:///path"
    )
    w.add_argument(
        "--keys",
        metavar="DIR/NAME",
        help="this worker's CURVE folder from `fedsim keys generate DIR` (DIR/worker) or "
        "`fedsim keys add-worker DIR NAME`",
    )
    w.add_argument(
        "--quiet",
        action="store_true",
        help="no line on connect, join, failure and exit (a failure to join is still said)",
    )
    w.add_argument(
        "--threads", type=int, default=1, help="torch threads (must match the coordinator's)"
    )
    w.add_argument(
        "--heartbeat", type=float, default=1.0, help="seconds between heartbeats (default 1)"
    )
    w.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds; after 2x this without a word from the coordinator the worker exits (default 10)",
    )
    w.set_defaults(fn=cmd_worker)

    k = sub.add_parser("keys", help="CURVE keys for tcp beyond localhost")
    ksub = k.add_subparsers(dest="keys_command", parser_class=_Parser, required=True)
    kg = ksub.add_parser(
        "generate",
        help="DIR/server (coordinator pair, authorized worker keys) and DIR/worker (one worker pair)",
    )
    kg.add_argument("dir", help="folder to write the key folders into")
    kg.add_argument("--force", action="store_true", help="replace every key of an existing DIR")
    kg.set_defaults(fn=cmd_keys)
    ka = ksub.add_parser(
        "add-worker", help="one more worker identity: DIR/NAME, its public key authorized"
    )
    ka.add_argument("dir", help="a folder from `fedsim keys generate`")
    ka.add_argument("name", help="the worker identity's name (a folder name)")
    ka.add_argument("--force", action="store_true", help="give an existing NAME new keys")
    ka.set_defaults(fn=cmd_keys)

    t = sub.add_parser("traffic", help="summaries and filters over a run's traffic.jsonl")
    t.add_argument("run_dir", help="a run directory (with traffic.jsonl)")
    t.add_argument(
        "--by",
        choices=["round", "client", "kind", "profile"],
        action="append",
        help="group bytes and messages by this (repeatable)",
    )
    t.add_argument("--round", type=int, action="append", help="only this round (repeatable)")
    t.add_argument("--client", type=int, action="append", help="only this client id (repeatable)")
    t.add_argument(
        "--kind",
        choices=["model", "update", "control"],
        action="append",
        help="only this message kind: model (down), update (up), control (repeatable)",
    )
    t.add_argument(
        "--format", choices=["table", "csv", "json"], default="table", help="output format"
    )
    t.set_defaults(fn=cmd_traffic)

    ex = sub.add_parser("export", help="a run's metrics and traffic as metrics.csv, traffic.csv")
    ex.add_argument("run_dir", help="a run directory, or an experiment's folder of runs")
    ex.add_argument("--format", choices=["csv"], default="csv", help="table format (csv)")
    ex.add_argument("--out", help="folder for the files (default: the run directory)")
    ex.add_argument("--force", action="store_true", help="overwrite existing CSV files")
    ex.set_defaults(fn=cmd_export)

    rp = sub.add_parser("report", help="plots/, report.md and report.html for a run directory")
    rp.add_argument("run_dir", help="a run directory")
    rp.set_defaults(fn=cmd_report)

    cp = sub.add_parser(
        "compare", help="overlaid curves and time/bytes-to-target table for runs or experiments"
    )
    cp.add_argument("run_dirs", nargs="+", help="run directories, or experiment folders of runs")
    cp.add_argument("--out", help="output folder (default <first run's parent>/compare)")
    cp.add_argument(
        "--target", type=float, help="target accuracy (default 0.95 x the lowest best accuracy)"
    )
    cp.add_argument(
        "--format", choices=["table", "csv", "json"], default="table", help="table output format"
    )
    cp.add_argument("--force", action="store_true", help="replace an earlier comparison in --out")
    cp.set_defaults(fn=cmd_compare)
    return p


def main(argv: list[str] | None = None) -> int:
    """Every exception becomes one line and an exit code in fedsim/cli_errors.py."""
    return guarded(lambda: _dispatch(build_parser(), argv))


def _dispatch(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    args = parser.parse_args(argv)
    if args.version:
        import fedsim

        print(f"fedsim {fedsim.__version__}")
        return 0
    if not getattr(args, "fn", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    return int(args.fn(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
