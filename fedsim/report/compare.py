"""`fedsim compare RUN_DIR...`: overlaid curves and a table of what each run paid (rounds,
simulated time, bytes) to reach a common target accuracy.

The default target is 0.95 x the lowest best accuracy among the runs, so that every run
that evaluated at all reaches it and the table has no holes; the target is always stated.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsim.errors import FedsimError
from fedsim.report import plots
from fedsim.report.document import Image, Table, render_html, render_markdown
from fedsim.report.rundir import Run, expand_run_dirs, load_run, run_labels
from fedsim.report.units import fmt_bytes, fmt_energy, fmt_pct, fmt_seconds

DEFAULT_TARGET_FRACTION = 0.95

# Row key -> (column heading, formatter for humans).
COLUMNS: dict[str, tuple[str, Any]] = {
    "run": ("run", str),
    "rounds": ("rounds", str),
    "final_accuracy": ("final acc", fmt_pct),
    "best_accuracy": ("best acc", fmt_pct),
    "rounds_to_target": ("rounds to target", lambda v: "–" if v is None else str(v)),
    "time_to_target": ("sim time to target", fmt_seconds),
    "bytes_to_target": ("bytes to target", fmt_bytes),
    "paper_bits_up_to_target": (
        "paper Mbit up to target",
        lambda v: "–" if v is None else f"{v / 1e6:.1f}",
    ),
    "bytes_up_total": ("bytes up", fmt_bytes),
    "bytes_down_total": ("bytes down", fmt_bytes),
    "sim_time_total": ("sim time", fmt_seconds),
    "energy_j_total": ("energy", fmt_energy),
}


@dataclass(frozen=True)
class Comparison:
    runs: list[Run]
    target: float | None
    target_note: str
    rows: list[dict[str, Any]]


def time_to_target(run: Run, target: float) -> dict[str, Any]:
    """Round, simulated time and cumulative bytes (up + down, through that round) at the first
    evaluation whose test accuracy is >= target; all None if the run never reaches it."""
    for m, cum_bytes in run.evaluated():
        if m["test_accuracy"] >= target:
            return {
                "rounds_to_target": m["round"],
                "time_to_target": m.get("sim_time"),
                "bytes_to_target": cum_bytes,
            }
    return {"rounds_to_target": None, "time_to_target": None, "bytes_to_target": None}


def default_target(runs: list[Run]) -> tuple[float | None, str]:
    bests = [(r.stat("best_accuracy"), r.name) for r in runs if r.stat("best_accuracy") is not None]
    if not bests:
        return None, "no run has a test accuracy; no target"
    lowest, name = min(bests)
    target = DEFAULT_TARGET_FRACTION * lowest
    return target, (
        f"target accuracy {fmt_pct(target)} (default: {DEFAULT_TARGET_FRACTION} x the lowest "
        f"best accuracy among the runs, {fmt_pct(lowest)} of {name})"
    )


def build_comparison(run_dirs: list[Path], target: float | None = None) -> Comparison:
    paths = expand_run_dirs([Path(p) for p in run_dirs])
    if not paths:
        raise FedsimError("fedsim compare: no run directories given")
    runs = [load_run(p, name) for p, name in zip(paths, run_labels(paths), strict=True)]
    if target is None:
        target, note = default_target(runs)
    elif not 0.0 < target <= 1.0:
        raise FedsimError(f"--target {target}: a test accuracy between 0 and 1 (e.g. 0.9)")
    else:
        note = f"target accuracy {fmt_pct(target)} (given)"
    rows = []
    for run in runs:
        row: dict[str, Any] = {"run": run.name, "path": str(run.path), "rounds": len(run.metrics)}
        for key in ("final_accuracy", "best_accuracy"):
            row[key] = run.stat(key)
        row["target"] = target
        if target is not None:
            row.update(time_to_target(run, target))
        else:
            row.update(rounds_to_target=None, time_to_target=None, bytes_to_target=None)
        if any("paper_bits_up" in m for m in run.metrics):  # the papers' own accounting
            upto = row["rounds_to_target"]
            row["paper_bits_up_to_target"] = (
                None
                if upto is None
                else sum(m.get("paper_bits_up") or 0 for m in run.metrics if m["round"] <= upto)
            )
        for key in ("bytes_up_total", "bytes_down_total", "sim_time_total", "energy_j_total"):
            row[key] = run.stat(key)
        rows.append(row)
    if all(r["energy_j_total"] is None for r in rows):
        for r in rows:
            del r["energy_j_total"]
    return Comparison(runs, target, note, rows)


def _human_table(rows: list[dict[str, Any]]) -> Table:
    keys = [k for k in COLUMNS if any(k in r for r in rows)]
    return Table(
        "Runs",
        [COLUMNS[k][0] for k in keys],
        [[COLUMNS[k][1](r.get(k)) for k in keys] for r in rows],
    )


def render_compare_table(rows: list[dict[str, Any]], fmt: str) -> str:
    """The comparison rows for a terminal: fmt 'table' (rich), 'csv' or 'json' (raw numbers)."""
    if fmt == "json":
        return json.dumps(rows, indent=1)
    if fmt == "csv":
        buf = io.StringIO()
        fields = list(dict.fromkeys(k for r in rows for k in r))
        w = csv.DictWriter(buf, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()
    if fmt != "table":
        raise FedsimError(f"--format {fmt}: choose table, csv or json")
    if not rows:
        return "no runs\n"
    from rich.console import Console
    from rich.table import Table as RichTable

    table = _human_table(rows)
    target = rows[0].get("target")
    title = f"runs compared (target accuracy {fmt_pct(target)})" if target else "runs compared"
    t = RichTable(title=title, title_justify="left")
    for i, h in enumerate(table.header):
        t.add_column(h, justify="left" if i == 0 else "right")
    for row in table.rows:
        t.add_row(*row)
    console = Console(file=io.StringIO(), width=180, force_terminal=False)
    console.print(t)
    return "".join(line.rstrip() + "\n" for line in console.file.getvalue().splitlines())


COMPARE_FIGURES = [
    ("accuracy_vs_time.png", "Test accuracy vs simulated time", "time"),
    ("accuracy_vs_bytes.png", "Test accuracy vs cumulative bytes on the wire (up + down)", "bytes"),
    ("accuracy_vs_round.png", "Test accuracy vs round", "round"),
]


def write_comparison(comp: Comparison, out_dir: Path, stem: str = "compare") -> Path:
    """Figures, <stem>.md, <stem>.html and <stem>.json (the rows) in out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = []
    for name, caption, x in COMPARE_FIGURES:
        fig = plots.accuracy_curves(comp.runs, x, comp.target)
        if fig is not None:
            images.append(Image(caption, plots.save(fig, out_dir / name)))
    fig = plots.energy_curves(comp.runs)
    if fig is not None:
        images.append(Image("Cumulative energy vs round", plots.save(fig, out_dir / "energy.png")))

    title = f"fedsim compare: {', '.join(r.name for r in comp.runs)}"
    notes = [
        comp.target_note + ".",
        "To-target columns: the first evaluated round whose test accuracy reaches the target; "
        "bytes are delivered up + down through that round.",
        "Runs: " + "; ".join(f"{r.name} = {r.path}" for r in comp.runs),
    ]
    blocks: list[Table | Image] = [_human_table(comp.rows), *images]
    md = out_dir / f"{stem}.md"
    md.write_text(render_markdown(title, notes, blocks, out_dir), encoding="utf-8")
    (out_dir / f"{stem}.html").write_text(render_html(title, notes, blocks), encoding="utf-8")
    (out_dir / f"{stem}.json").write_text(
        json.dumps({"target": comp.target, "note": comp.target_note, "rows": comp.rows}, indent=1)
        + "\n",
        encoding="utf-8",
    )
    return md


def compare_runs(run_dirs: list[Path], out_dir: Path, target: float | None = None) -> Path:
    """Compare runs (experiment folders expand into their variants); return out_dir/compare.md.
    The rows are also in out_dir/compare.json; `build_comparison` returns them directly."""
    return write_comparison(build_comparison(run_dirs, target), out_dir)


def default_out_dir(run_dirs: list[Path]) -> Path:
    """<first run's parent>/compare (an experiment folder's own compare/ for its variants)."""
    return expand_run_dirs([Path(p) for p in run_dirs])[0].parent / "compare"


def comparison_files(out_dir: Path, stem: str = "compare") -> list[Path]:
    """The files `write_comparison` writes into out_dir that already exist there."""
    names = [f"{stem}.md", f"{stem}.html", f"{stem}.json", "energy.png"]
    names += [name for name, _, _ in COMPARE_FIGURES]
    return [out_dir / n for n in names if (out_dir / n).exists()]


def claim_out_dir(out_dir: Path, force: bool) -> None:
    """An earlier comparison in out_dir is never overwritten silently: refuse, or (force)
    remove all of it, so no figure of the old comparison stays beside the new one."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FedsimError(f"--out {out_dir}: exists and is not a directory")
    earlier = comparison_files(out_dir) if out_dir.is_dir() else []
    if earlier and not force:
        raise FedsimError(
            f"--out {out_dir}: holds an earlier comparison ({earlier[0].name}); pass --force "
            "to replace it, or choose another --out"
        )
    for path in earlier:
        path.unlink()


def compare_command(args: Any) -> int:
    """CLI glue: args.run_dirs, args.out (optional), args.target (optional), args.format,
    args.force (replace an earlier comparison in the output folder)."""
    run_dirs = [Path(p) for p in args.run_dirs]
    comp = build_comparison(run_dirs, getattr(args, "target", None))
    out = Path(args.out) if getattr(args, "out", None) else default_out_dir(run_dirs)
    claim_out_dir(out, bool(getattr(args, "force", False)))
    md = write_comparison(comp, out)
    print(render_compare_table(comp.rows, getattr(args, "format", None) or "table"), end="")
    # Where the files went goes to stderr, so csv/json on stdout stay machine-readable.
    print(f"{comp.target_note}\ncomparison: {md} (+ compare.html, figures)", file=sys.stderr)
    return 0
