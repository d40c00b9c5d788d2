"""`fedsim report RUN_DIR`: figures in RUN_DIR/plots/, RUN_DIR/report.md and a
self-contained RUN_DIR/report.html (figures embedded as base64 data URIs)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from fedsim.report import plots
from fedsim.report.compare import (
    BAND_NOTE,
    COMPARE_FIGURES,
    STD_NOTE,
    aggregate_group,
    build_comparison,
    group_table,
    human_table,
)
from fedsim.report.document import Image, Table, render_html, render_markdown
from fedsim.report.rundir import Run, load_run, seed_dirs
from fedsim.report.units import fmt_bytes, fmt_energy, fmt_pct, fmt_seconds

# (file name, caption, figure builder); a builder returning None is skipped.
FIGURES: list[tuple[str, str, Callable[[Run], Figure | None]]] = [
    (
        "accuracy_vs_time.png",
        "Test accuracy vs simulated time",
        lambda r: plots.accuracy_curves([r], "time"),
    ),
    (
        "accuracy_vs_bytes.png",
        "Test accuracy vs cumulative bytes on the wire (up + down)",
        lambda r: plots.accuracy_curves([r], "bytes"),
    ),
    ("bytes_per_round.png", "Bytes up and down per round", plots.bytes_per_round),
    ("client_timeline.png", "Client timeline (first rounds)", plots.client_timeline),
    ("loss.png", "Loss per round", plots.loss_curves),
    ("compression.png", "Bits and sparsity per round", plots.compression_per_round),
    ("energy.png", "Energy per round", plots.energy_per_round),
]


def summary_table(run: Run) -> Table:
    s = run.stat
    accs = run.evaluated()
    best = max(accs, key=lambda p: p[0]["test_accuracy"])[0] if accs else None
    planned = run.summary.get("rounds")
    rows = [
        ["scenario", str(run.summary.get("scenario") or _scenario_name(run))],
        ["seed", str(run.summary.get("seed", "–"))],
        [
            "rounds",
            f"{len(run.metrics)}"
            + (f" of {planned}" if planned and planned != len(run.metrics) else ""),
        ],
        ["final test accuracy", fmt_pct(s("final_accuracy"))],
        [
            "best test accuracy",
            fmt_pct(s("best_accuracy")) + (f" (round {best['round']})" if best else ""),
        ],
        ["simulated time", fmt_seconds(s("sim_time_total"))],
        ["wall-clock time", fmt_seconds(s("wall_time_total"))],
        ["bytes up (updates, delivered)", fmt_bytes(s("bytes_up_total"))],
        ["bytes down (models, delivered)", fmt_bytes(s("bytes_down_total"))],
        ["bytes total", fmt_bytes((s("bytes_up_total") or 0) + (s("bytes_down_total") or 0))],
    ]
    counts = {
        k: sum(int(m.get(k) or 0) for m in run.metrics)
        for k in ("selected", "aggregated", "dropped")
    }
    rows.append(
        [
            "client updates selected / aggregated / dropped",
            f"{counts['selected']:,} / {counts['aggregated']:,} / {counts['dropped']:,}",
        ]
    )
    if s("energy_j_total") is not None:
        rows.append(["energy", fmt_energy(s("energy_j_total"))])
    codec = run.summary.get("codec")
    if isinstance(codec, dict):
        rows.append(
            ["codec up / down", f"{codec.get('uplink', '?')} / {codec.get('downlink', '?')}"]
        )
    if run.summary.get("model_params") is not None:
        rows.append(["model parameters", f"{int(run.summary['model_params']):,}"])
    if run.summary.get("model_sha256"):
        rows.append(["model sha256", f"`{run.summary['model_sha256']}`"])
    versions = run.summary.get("versions")
    if isinstance(versions, dict) and versions:
        rows.append(["versions", ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))])
    return Table("Summary", ["", "value"], rows)


def dropout_table(run: Run) -> Table | None:
    """Messages that never arrived, by kind and reason (from traffic.jsonl)."""
    counts = Counter(
        (r.get("kind", "?"), r.get("reason") or "unknown") for r in run.traffic if r.get("dropped")
    )
    if not counts:
        return None
    rows = [[kind, reason, f"{n:,}"] for (kind, reason), n in sorted(counts.items())]
    return Table("Dropped messages", ["kind", "reason", "messages"], rows)


def _scenario_name(run: Run) -> str:
    for line in _read_text(run.path / "scenario.toml").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "name":
            return value.strip().strip('"')
    return run.path.name


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def make_report(run_dir: Path) -> Path:
    """Write run_dir/plots/*.png, run_dir/report.md and run_dir/report.html; return report.md.
    A seeds folder (`fedsim run --seeds`: seed-N runs inside) gets the report of its repeats."""
    run_dir = Path(run_dir)
    if seed_dirs(run_dir):
        return make_seeds_report(run_dir)
    run = load_run(run_dir)
    plot_dir = run_dir / "plots"
    images: list[Image] = []
    for name, caption, build in FIGURES:
        fig = build(run)
        if fig is not None:
            images.append(Image(caption, plots.save(fig, plot_dir / name)))
        else:
            # A figure from an earlier report of this directory must not outlive its data.
            (plot_dir / name).unlink(missing_ok=True)

    title = f"fedsim report: {run.summary.get('scenario') or _scenario_name(run)}"
    notes = [f"Run directory: {run_dir}"]
    if not run.complete:
        notes.append(
            f"No summary.json: the run is unfinished or crashed; the table and figures "
            f"come from the {len(run.metrics)} rounds in metrics.jsonl."
        )
    if not run.traffic:
        notes.append("No traffic.jsonl: no client timeline or dropout table.")
    tables = [summary_table(run)]
    drops = dropout_table(run)
    if drops is not None:
        tables.append(drops)
    blocks: list[Table | Image] = [*tables, *images]

    md = run_dir / "report.md"
    md.write_text(render_markdown(title, notes, blocks, run_dir), encoding="utf-8")
    (run_dir / "report.html").write_text(render_html(title, notes, blocks), encoding="utf-8")
    return md


def make_seeds_report(folder: Path) -> Path:
    """The report of one variant's repeats: each figure as mean ± std over the seeds and per
    seed, accuracy as the mean with a min–max band; target = the scenario's
    eval.target_accuracy (else 0.95 x the lowest best accuracy, as `fedsim compare`)."""
    runs = seed_dirs(folder)
    comp = build_comparison(runs, _scenario_target(runs[0]))
    group = aggregate_group(folder.name, comp.runs, comp.rows)
    per_seed = human_table(comp.rows)
    shas = [
        [r.name, f"`{r.summary.get('model_sha256', '–')}`", str(r.summary.get("seed", "–"))]
        for r in comp.runs
    ]
    plot_dir = folder / "plots"
    images = []
    for name, caption, x in COMPARE_FIGURES:
        fig = plots.accuracy_bands([(folder.name, comp.runs)], x, comp.target)
        if fig is not None:
            images.append(Image(f"{caption} ({BAND_NOTE})", plots.save(fig, plot_dir / name)))
    name = comp.runs[0].summary.get("scenario") or _scenario_name(comp.runs[0])
    title = f"fedsim report: {name}, {len(runs)} seeds"
    notes = [
        f"Seeds folder: {folder} ({', '.join(r.name for r in comp.runs)})",
        comp.target_note + ".",
        f"Mean ± std over the seeds; {STD_NOTE}. To-target figures average over the seeds "
        "that reach the target ('reached target' says how many).",
    ]
    blocks: list[Table | Image] = [
        group_table([group]),
        Table("Per seed", per_seed.header, per_seed.rows),
        Table("Final models", ["run", "model sha256", "seed"], shas),
        *images,
    ]
    md = folder / "report.md"
    md.write_text(render_markdown(title, notes, blocks, folder), encoding="utf-8")
    (folder / "report.html").write_text(render_html(title, notes, blocks), encoding="utf-8")
    return md


def _scenario_target(run_dir: Path) -> float | None:
    import tomllib

    try:
        doc = tomllib.loads(_read_text(run_dir / "scenario.toml"))
    except tomllib.TOMLDecodeError:
        return None
    target = doc.get("eval", {}).get("target_accuracy")
    return float(target) if isinstance(target, int | float) else None


def report_command(args: Any) -> int:
    """CLI glue: args.run_dir."""
    md = make_report(Path(args.run_dir))
    n = len(list((md.parent / "plots").glob("*.png")))
    print(f"report: {md}")
    print(f"        {md.with_suffix('.html')} (self-contained)")
    print(f"plots:  {md.parent / 'plots'} ({n} figures)")
    return 0
