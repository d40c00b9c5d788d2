"""`fedsim compare RUN_DIR...`: overlaid curves and a table of what each run paid (rounds,
simulated time, bytes) to reach a common target accuracy.

The default target is 0.95 x the lowest best accuracy among the runs, so that every run
that evaluated at all reaches it and the table has no holes; the target is always stated.

Repeats (`fedsim run --seeds`): runs of the same variant that differ only by seed — the
seed-N folders of one seeds folder, or runs whose scenario.toml differ only in `seed` (and
`runtime`, which does not change results) — form a group, reported as mean ± std over its
seeds beside the per-seed values; the to-target figures average over the seeds that reach
the target and say how many of them do.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from fedsim.errors import FedsimError
from fedsim.report import plots
from fedsim.report.document import Image, Table, render_html, render_markdown
from fedsim.report.rundir import (
    Run,
    expand_run_dirs,
    is_run_dir,
    load_run,
    run_labels,
    seed_of_dir,
)
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


# Figures aggregated over a group's seeds; the to-target ones over the seeds that reach it.
AGGREGATED = (
    "final_accuracy",
    "best_accuracy",
    "rounds_to_target",
    "time_to_target",
    "bytes_to_target",
    "paper_bits_up_to_target",
    "bytes_up_total",
    "bytes_down_total",
    "sim_time_total",
    "energy_j_total",
)
STD_NOTE = "std is the population standard deviation over the seeds (numpy.std, ddof = 0)"
BAND_NOTE = "lines are the mean over the seeds, bands span their min to max"


@dataclass(frozen=True)
class Comparison:
    runs: list[Run]
    target: float | None
    target_note: str
    rows: list[dict[str, Any]]
    # Repeats: one aggregated row per group of runs differing only by seed (a run without
    # repeats is a group of one); empty when no two runs are repeats of each other.
    groups: list[dict[str, Any]] = field(default_factory=list)
    group_runs: list[tuple[str, list[Run]]] = field(default_factory=list)


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
    members = seed_groups(runs)
    if all(len(m) == 1 for m in members):
        return Comparison(runs, target, note, rows)
    labels = _group_labels(runs, members)
    groups = [
        aggregate_group(label, [runs[i] for i in m], [rows[i] for i in m])
        for label, m in zip(labels, members, strict=True)
    ]
    group_runs = [(label, [runs[i] for i in m]) for label, m in zip(labels, members, strict=True)]
    return Comparison(runs, target, note, rows, groups, group_runs)


# ---- repeats -------------------------------------------------------------------------------
def run_seed(run: Run) -> int | None:
    """The seed a run used: summary.json, else its scenario.toml, else its seed-N folder."""
    seed = run.summary.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        return seed
    seed = _scenario_doc(run).get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        return seed
    return seed_of_dir(run.path)


def _scenario_doc(run: Run) -> dict[str, Any]:
    try:
        return tomllib.loads((run.path / "scenario.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def _group_key(run: Run) -> Any:
    """Runs with equal keys are repeats: seed-N folders of one seeds folder, or equal resolved
    scenarios apart from the seed (and runtime settings, which do not change results)."""
    if seed_of_dir(run.path) is not None:
        return ("folder", str(run.path.parent.resolve()))
    doc = _scenario_doc(run)
    if not doc:
        return ("run", str(run.path.resolve()))  # nothing to compare: a group of its own
    rest = {k: v for k, v in doc.items() if k not in ("seed", "seeds", "repeats", "runtime")}
    return ("scenario", json.dumps(rest, sort_keys=True, default=str))


def seed_groups(runs: list[Run]) -> list[list[int]]:
    """Indices of runs grouped as repeats (in order of first appearance). A would-be group
    whose seeds are not all known and distinct is left as single runs."""
    by_key: dict[Any, list[int]] = {}
    for i, run in enumerate(runs):
        by_key.setdefault(_group_key(run), []).append(i)
    out: list[list[int]] = []
    for members in by_key.values():
        seeds = [run_seed(runs[i]) for i in members]
        if len(members) > 1 and None not in seeds and len(set(seeds)) == len(seeds):
            out.append(members)
        else:
            out.extend([i] for i in members)
    return sorted(out, key=lambda m: m[0])


def _group_labels(runs: list[Run], members: list[list[int]]) -> list[str]:
    """A seeds folder is named as its folder; other repeats by their runs' names joined."""
    folders = []
    for m in members:
        first = runs[m[0]].path
        same_folder = len(m) > 1 and all(
            seed_of_dir(runs[i].path) is not None and runs[i].path.parent == first.parent for i in m
        )
        folders.append(first.parent if same_folder else None)
    named = [f for f in folders if f is not None]
    folder_label = dict(zip(named, run_labels(named), strict=True)) if named else {}
    return [
        folder_label[f] if f is not None else "+".join(runs[i].name for i in m)
        for f, m in zip(folders, members, strict=True)
    ]


def spread(values: list[Any]) -> dict[str, Any]:
    """mean and std (numpy, ddof = 0) of the numbers among `values`, and the values as given
    (None where a seed has no such figure, e.g. never reached the target)."""
    nums = [float(v) for v in values if v is not None]
    return {
        "mean": float(np.mean(nums)) if nums else None,
        "std": float(np.std(nums)) if nums else None,
        "values": list(values),
    }


def aggregate_group(label: str, runs: list[Run], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One row for a group of repeats: each figure as {mean, std, values} over its seeds;
    to-target figures over the seeds that reach the target, with `reached` of `n`."""
    group: dict[str, Any] = {
        "run": label,
        "n": len(runs),
        "seeds": [run_seed(r) for r in runs],
        "runs": [r.name for r in runs],
        "paths": [str(r.path) for r in runs],
        "target": rows[0].get("target"),
        "rounds": spread([r["rounds"] for r in rows]),
    }
    if rows[0].get("target") is not None:
        group["reached"] = sum(r.get("rounds_to_target") is not None for r in rows)
    for key in AGGREGATED:
        if any(key in r for r in rows):
            group[key] = spread([r.get(key) for r in rows])
    return group


def human_table(rows: list[dict[str, Any]]) -> Table:
    keys = [k for k in COLUMNS if any(k in r for r in rows)]
    return Table(
        "Runs",
        [COLUMNS[k][0] for k in keys],
        [[COLUMNS[k][1](r.get(k)) for k in keys] for r in rows],
    )


def _mean_std(cell: dict[str, Any] | None, fmt: Any, n: int) -> str:
    if not cell or cell["mean"] is None:
        return "–"
    return fmt(cell["mean"]) if n == 1 else f"{fmt(cell['mean'])} ± {fmt(cell['std'])}"


def group_table(groups: list[dict[str, Any]]) -> Table:
    """Mean ± std over each group's seeds; "reached" is how many seeds reach the target."""
    keys = [k for k in AGGREGATED if any(k in g for g in groups)]
    has_target = any("reached" in g for g in groups)
    header = ["run", "seeds"] + (["reached target"] if has_target else [])
    header += [COLUMNS[k][0] for k in keys]
    body = []
    for g in groups:
        row = [g["run"], ",".join(str(s) for s in g["seeds"])]
        if has_target:
            row.append(f"{g.get('reached', 0)}/{g['n']}")
        for k in keys:
            fmt = COLUMNS[k][1] if k != "rounds_to_target" else (lambda v: f"{v:.3g}")
            row.append(_mean_std(g.get(k), fmt, g["n"]))
        body.append(row)
    return Table("Mean ± std over seeds", header, body)


def _flat_group(g: dict[str, Any]) -> dict[str, Any]:
    """A group row with each {mean, std, values} as KEY_mean, KEY_std (for csv)."""
    out: dict[str, Any] = {}
    for k, v in g.items():
        if isinstance(v, dict) and "mean" in v:
            out[f"{k}_mean"], out[f"{k}_std"] = v["mean"], v["std"]
        elif isinstance(v, list):
            out[k] = " ".join(str(x) for x in v)
        else:
            out[k] = v
    return out


def render_comparison(comp: Comparison, fmt: str) -> str:
    """The comparison for a terminal: per-run rows, or with repeats the mean ± std rows
    ('table'), the group rows flattened to KEY_mean/KEY_std ('csv'), or the group rows with
    {mean, std, values} and the per-seed rows ('json')."""
    if not comp.groups:
        return render_compare_table(comp.rows, fmt)
    if fmt == "json":
        return json.dumps({"groups": comp.groups, "rows": comp.rows}, indent=1)
    if fmt == "csv":
        return render_compare_table([_flat_group(g) for g in comp.groups], "csv")
    if fmt != "table":
        raise FedsimError(f"--format {fmt}: choose table, csv or json")
    table = group_table(comp.groups)
    target = comp.target
    title = "runs compared, mean ± std over seeds"
    title += f" (target accuracy {fmt_pct(target)})" if target else ""
    return _rich(table, title) + f"({STD_NOTE})\n"


def _rich(table: Table, title: str) -> str:
    from rich.console import Console
    from rich.table import Table as RichTable

    t = RichTable(title=title, title_justify="left")
    for i, h in enumerate(table.header):
        t.add_column(h, justify="left" if i == 0 else "right")
    for row in table.rows:
        t.add_row(*row)
    console = Console(file=io.StringIO(), width=180, force_terminal=False)
    console.print(t)
    return "".join(line.rstrip() + "\n" for line in console.file.getvalue().splitlines())


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
    target = rows[0].get("target")
    title = f"runs compared (target accuracy {fmt_pct(target)})" if target else "runs compared"
    return _rich(human_table(rows), title)


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
        if comp.groups:
            fig = plots.accuracy_bands(comp.group_runs, x, comp.target)
            caption += f" ({BAND_NOTE})"
        else:
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
    blocks: list[Table | Image] = [human_table(comp.rows), *images]
    doc: dict[str, Any] = {"target": comp.target, "note": comp.target_note, "rows": comp.rows}
    if comp.groups:
        notes.insert(
            1,
            f"Repeats: mean ± std over each group's seeds; {STD_NOTE}. To-target figures "
            "average over the seeds that reach the target ('reached target' says how many); "
            "the per-seed values follow in the table 'Runs (per seed)'.",
        )
        per_seed = human_table(comp.rows)
        blocks = [
            group_table(comp.groups),
            Table("Runs (per seed)", per_seed.header, per_seed.rows),
        ]
        blocks += images
        doc["std"] = STD_NOTE
        doc["groups"] = comp.groups
    md = out_dir / f"{stem}.md"
    md.write_text(render_markdown(title, notes, blocks, out_dir), encoding="utf-8")
    (out_dir / f"{stem}.html").write_text(render_html(title, notes, blocks), encoding="utf-8")
    (out_dir / f"{stem}.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return md


def compare_runs(run_dirs: list[Path], out_dir: Path, target: float | None = None) -> Path:
    """Compare runs (experiment folders expand into their variants); return out_dir/compare.md.
    The rows are also in out_dir/compare.json; `build_comparison` returns them directly."""
    return write_comparison(build_comparison(run_dirs, target), out_dir)


def default_out_dir(run_dirs: list[Path]) -> Path:
    """<first run's parent>/compare; for an experiment or seeds folder its own compare/."""
    first = Path(run_dirs[0])
    return (first.parent if is_run_dir(first) else first) / "compare"


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
    print(render_comparison(comp, getattr(args, "format", None) or "table"), end="")
    # Where the files went goes to stderr, so csv/json on stdout stay machine-readable.
    print(f"{comp.target_note}\ncomparison: {md} (+ compare.html, figures)", file=sys.stderr)
    return 0
