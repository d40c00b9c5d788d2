"""The figures of `fedsim report` and `fedsim compare`, drawn with matplotlib's Agg renderer.

Every function takes loaded runs (fedsim.report.rundir.Run) and returns a Figure, or None
when the run has nothing to show for it. Figures are built with `matplotlib.figure.Figure`
and never through pyplot, so no GUI backend or global figure state is involved.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from fedsim.report.rundir import Run
from fedsim.report.units import byte_scale, energy_scale, time_scale

DOWN, COMPUTE, UP, DROP = "#4C72B0", "#DD8452", "#55A868", "#C44E52"
# Marker per dropout reason on the client timeline (coordinator: offline, straggler, deadline).
REASON_MARKERS = {"offline": "X", "straggler": "v", "deadline": "D"}
ACCURACY_X = {
    "time": "simulated time",
    "bytes": "cumulative bytes up + down",
    "round": "round",
}


def new_figure(width: float = 8.0, height: float = 4.5) -> Figure:
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    return fig


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def _style(ax: Any, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=12, loc="left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)


def _marker(n_points: int) -> dict[str, Any]:
    return {"marker": "o", "markersize": 3} if n_points <= 60 else {}


def accuracy_curves(runs: Sequence[Run], x: str, target: float | None = None) -> Figure | None:
    """Test accuracy against simulated time, cumulative bytes (up + down) or round."""
    series = []
    for run in runs:
        pts = run.evaluated()
        if not pts:
            continue
        if x == "time":
            xs = [m.get("sim_time") or 0.0 for m, _ in pts]
        elif x == "bytes":
            xs = [b for _, b in pts]
        else:
            xs = [m["round"] for m, _ in pts]
        series.append((run.name, xs, [100 * m["test_accuracy"] for m, _ in pts]))
    if not series:
        return None
    largest = max(max(xs) for _, xs, _ in series)
    div, unit = (
        time_scale(largest) if x == "time" else byte_scale(largest) if x == "bytes" else (1.0, "")
    )
    fig = new_figure()
    ax = fig.add_subplot()
    for name, xs, ys in series:
        ax.plot([v / div for v in xs], ys, label=name, linewidth=1.6, **_marker(len(xs)))
    _target_line(ax, target)
    xlabel = ACCURACY_X[x] + (f" ({unit})" if unit else "")
    _style(ax, f"Test accuracy vs {ACCURACY_X[x]}", xlabel, "test accuracy (%)")
    if x == "round":
        ax.xaxis.get_major_locator().set_params(integer=True)
    if len(series) > 1:
        ax.legend(fontsize=8)
    return fig


def _accuracy_points(run: Run, x: str) -> dict[int, tuple[float, float]]:
    """round -> (x, test accuracy in %) for each evaluated round of a run."""
    out = {}
    for m, cum_bytes in run.evaluated():
        xv = (
            (m.get("sim_time") or 0.0) if x == "time" else cum_bytes if x == "bytes" else m["round"]
        )
        out[m["round"]] = (float(xv), 100 * m["test_accuracy"])
    return out


def seed_band(
    runs: Sequence[Run], x: str
) -> tuple[list[float], list[float], list[float], list[float]]:
    """(xs, mean, min, max) of test accuracy over repeats, round by round: at each evaluated
    round, the mean, lowest and highest accuracy over the seeds that evaluated it, placed at
    the mean of their x (simulated time and bytes differ between seeds)."""
    per_run = [_accuracy_points(r, x) for r in runs]
    rounds = sorted({rnd for pts in per_run for rnd in pts})
    xs, mean, lo, hi = [], [], [], []
    for rnd in rounds:
        pts = [pts[rnd] for pts in per_run if rnd in pts]
        ys = [y for _, y in pts]
        xs.append(sum(xv for xv, _ in pts) / len(pts))
        mean.append(sum(ys) / len(ys))
        lo.append(min(ys))
        hi.append(max(ys))
    return xs, mean, lo, hi


def accuracy_bands(
    groups: Sequence[tuple[str, Sequence[Run]]], x: str, target: float | None = None
) -> Figure | None:
    """Test accuracy against simulated time, bytes or round: per group of repeats the mean
    over its seeds as a line and the min–max over its seeds as a band."""
    series = [(name, *seed_band(runs, x), len(runs)) for name, runs in groups]
    series = [s for s in series if s[1]]
    if not series:
        return None
    largest = max(max(s[1]) for s in series)
    div, unit = (
        time_scale(largest) if x == "time" else byte_scale(largest) if x == "bytes" else (1.0, "")
    )
    fig = new_figure()
    ax = fig.add_subplot()
    for name, xs, mean, lo, hi, n in series:
        sx = [v / div for v in xs]
        label = f"{name} (mean of {n} seeds)" if n > 1 else name
        (line,) = ax.plot(sx, mean, label=label, linewidth=1.6, **_marker(len(xs)))
        if n > 1:
            ax.fill_between(sx, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    _target_line(ax, target)
    xlabel = ACCURACY_X[x] + (f" ({unit})" if unit else "")
    _style(
        ax,
        f"Test accuracy vs {ACCURACY_X[x]} (band: min–max over seeds)",
        xlabel,
        "test accuracy (%)",
    )
    if x == "round":
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    return fig


def _target_line(ax: Any, target: float | None) -> None:
    if target is None:
        return
    ax.axhline(100 * target, color="grey", linestyle="--", linewidth=1)
    ax.annotate(
        f"target {100 * target:.2f}%",
        (0.0, 100 * target),
        xycoords=("axes fraction", "data"),
        xytext=(4, 3),
        textcoords="offset points",
        fontsize=8,
        color="grey",
    )


def loss_curves(run: Run) -> Figure | None:
    fig = new_figure()
    ax = fig.add_subplot()
    drawn = False
    for key, label in [
        ("train_loss", "train loss (mean over clients)"),
        ("test_loss", "test loss"),
    ]:
        rs, vs = run.series(key)
        if rs:
            ax.plot(rs, vs, label=label, linewidth=1.6, **_marker(len(rs)))
            drawn = True
    if not drawn:
        return None
    _style(ax, "Loss per round", "round", "loss")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    return fig


def dropped_update_bytes(run: Run) -> dict[int, int]:
    """Wire bytes of updates that were sent but never accepted, per round."""
    out: dict[int, int] = defaultdict(int)
    for r in run.traffic:
        if r.get("kind") == "update" and r.get("dropped") and r.get("t_send") is not None:
            out[r["round"]] += int(r.get("wire_bytes") or 0)
    return out


def bytes_per_round(run: Run) -> Figure | None:
    if not run.metrics:
        return None
    rounds = run.column("round")
    up = [int(v or 0) for v in run.column("bytes_up")]
    down = [int(v or 0) for v in run.column("bytes_down")]
    wasted_by_round = dropped_update_bytes(run)
    wasted = [wasted_by_round.get(r, 0) for r in rounds]
    div, unit = byte_scale(max(up + down + [u + w for u, w in zip(up, wasted, strict=True)] + [1]))
    fig = new_figure()
    ax = fig.add_subplot()

    def scale(vs: list[int]) -> list[float]:
        return [v / div for v in vs]

    if len(rounds) <= 40:
        w = 0.4
        ax.bar(
            [r - w / 2 for r in rounds],
            scale(down),
            w,
            color=DOWN,
            label="down (models, delivered)",
        )
        ax.bar([r + w / 2 for r in rounds], scale(up), w, color=UP, label="up (updates, delivered)")
        if any(wasted):
            ax.bar(
                [r + w / 2 for r in rounds],
                scale(wasted),
                w,
                bottom=scale(up),
                color="white",
                edgecolor=DROP,
                hatch="///",
                label="up, dropped updates (not delivered)",
            )
    else:
        ax.plot(
            rounds, scale(down), color=DOWN, label="down (models, delivered)", drawstyle="steps-mid"
        )
        ax.plot(rounds, scale(up), color=UP, label="up (updates, delivered)", drawstyle="steps-mid")
        if any(wasted):
            ax.plot(
                rounds,
                scale(wasted),
                color=DROP,
                label="up, dropped updates (not delivered)",
                drawstyle="steps-mid",
            )
    _style(ax, "Bytes on the wire per round", "round", f"bytes ({unit})")
    ax.xaxis.get_major_locator().set_params(integer=True)
    fig.legend(loc="outside lower center", ncol=3, fontsize=8)
    return fig


def compression_fields(run: Run) -> list[str]:
    """Numeric per-round fields that describe compression: bits*, sparsity."""
    keys: dict[str, None] = {}
    for m in run.metrics:
        for k, v in m.items():
            if (k.startswith("bits") or k == "sparsity") and isinstance(v, (int, float)):
                keys.setdefault(k, None)
    return sorted(keys, key=lambda k: (k == "sparsity", k))


def compression_per_round(run: Run) -> Figure | None:
    """Bits (all bits* fields on one axis) and sparsity per round, one panel each."""
    fields = compression_fields(run)
    if not fields:
        return None
    panels = [
        p for p in ([f for f in fields if f != "sparsity"], ["sparsity"]) if set(p) & set(fields)
    ]
    fig = new_figure(8.0, 2.2 + 2.3 * len(panels))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, keys in zip(axes, panels, strict=True):
        for k in keys:
            rs, vs = run.series(k)
            ax.plot(rs, vs, label=k, linewidth=1.6, **_marker(len(rs)))
        is_bits = keys != ["sparsity"]
        ax.set_ylabel("bits" if is_bits else "sparsity (fraction)")
        ax.grid(True, alpha=0.3)
        if is_bits:
            ax.legend(fontsize=8)
        else:
            ax.set_ylim(0, 1.02)
    axes[0].set_title("Compression per round", fontsize=12, loc="left")
    axes[-1].set_xlabel("round")
    axes[-1].xaxis.get_major_locator().set_params(integer=True)
    return fig


def energy_per_round(run: Run) -> Figure | None:
    rs, es = run.series("energy_j")
    if not rs:
        return None
    cumulative = list(itertools.accumulate(es))
    div, unit = energy_scale(max(es))
    cdiv, cunit = energy_scale(cumulative[-1])
    fig = new_figure()
    ax = fig.add_subplot()
    ax.bar(
        rs, [e / div for e in es], 0.7 if len(rs) <= 40 else 1.0, color=COMPUTE, label="per round"
    )
    _style(ax, "Energy per round", "round", f"energy per round ({unit})")
    ax2 = ax.twinx()
    ax2.plot(rs, [c / cdiv for c in cumulative], color="black", linewidth=1.4, label="cumulative")
    ax2.set_ylabel(f"cumulative energy ({cunit})")
    ax2.set_ylim(bottom=0)
    ax.xaxis.get_major_locator().set_params(integer=True)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=8, loc="upper left")
    return fig


def energy_curves(runs: Sequence[Run]) -> Figure | None:
    """Cumulative energy against round, one line per run."""
    series = []
    for run in runs:
        rs, es = run.series("energy_j")
        if rs:
            series.append((run.name, rs, list(itertools.accumulate(es))))
    if not series:
        return None
    div, unit = energy_scale(max(cs[-1] for _, _, cs in series))
    fig = new_figure()
    ax = fig.add_subplot()
    for name, rs, cs in series:
        ax.plot(rs, [c / div for c in cs], label=name, linewidth=1.6, **_marker(len(rs)))
    _style(ax, "Cumulative energy vs round", "round", f"cumulative energy ({unit})")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    return fig


def client_timeline(run: Run, max_rounds: int = 5, max_clients: int = 30) -> Figure | None:
    """Per client and round: download, compute and upload in simulated time, dropouts marked.

    A download ends at the model row's t_deliver, compute ends at the update row's
    t_compute_end, the upload runs from its t_send to its t_deliver. An update that was
    dropped after it started sending is drawn hatched up to the end of its round.

    One row per client: the first rounds are shown (at most max_rounds) as long as the
    clients they selected fit in max_clients rows; a single round with more clients than
    that shows its first max_clients.
    """
    msgs = [
        r
        for r in run.traffic
        if r.get("client") is not None and r.get("kind") in ("model", "update")
    ]
    if not msgs:
        return None
    selected: dict[int, set[int]] = defaultdict(set)
    for r in msgs:
        selected[r["round"]].add(int(r["client"]))
    rounds: list[int] = []
    clients_all: set[int] = set()
    for rnd in sorted(selected)[:max_rounds]:
        if rounds and len(clients_all | selected[rnd]) > max_clients:
            break
        rounds.append(rnd)
        clients_all |= selected[rnd]
    shown_rounds = set(rounds)
    msgs = [r for r in msgs if r["round"] in shown_rounds]
    clients = sorted(clients_all)[:max_clients]
    y_of = {c: i for i, c in enumerate(clients)}
    round_end = {m["round"]: m.get("sim_time") for m in run.metrics}
    by_key: dict[tuple[int, int], dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in msgs:
        if int(r["client"]) in y_of:
            by_key[(r["round"], int(r["client"]))][r["kind"]] = r

    fig = new_figure(10.0, max(3.2, 0.32 * len(clients) + 2.0))
    ax = fig.add_subplot()
    h = 0.6
    drops: dict[str, list[tuple[float, int]]] = defaultdict(list)
    t_max = 0.0
    cut_off = False

    def bar(y: int, t0: float | None, t1: float | None, **kw: Any) -> None:
        nonlocal t_max
        if t0 is not None and t1 is not None and t1 >= t0:
            ax.barh(y, t1 - t0, left=t0, height=h, **kw)
            t_max = max(t_max, t1)

    for (rnd, c), rows in sorted(by_key.items()):
        y = y_of[c]
        model, update = rows.get("model"), rows.get("update")
        end = round_end.get(rnd)
        if model is not None:
            bar(y, model.get("t_send"), model.get("t_deliver"), color=DOWN)
            if model.get("dropped"):
                drops[model.get("reason") or "dropped"].append((model.get("t_send") or 0.0, y))
                continue
        if update is None:
            continue
        t_down = model.get("t_deliver") if model is not None else None
        bar(y, t_down, update.get("t_compute_end"), color=COMPUTE)
        t_up = update.get("t_send")
        if not update.get("dropped"):
            bar(y, t_up, update.get("t_deliver"), color=UP)
            continue
        if t_up is not None:
            bar(y, t_up, end, color="white", edgecolor=UP, hatch="////", linewidth=0.6)
            cut_off = True
        # Mark the drop where the client was last seen: the end of the round for a cut-off
        # upload, otherwise the end of its compute or download.
        seen = (end if t_up is not None else None, update.get("t_compute_end"), t_down, end)
        t_drop = next((t for t in seen if t is not None), 0.0)
        drops[update.get("reason") or "dropped"].append((t_drop, y))

    # Round boundaries (metrics sim_time is the end of each round).
    prev = None
    for rnd in rounds:
        end = round_end.get(rnd)
        if end is None:
            continue
        t_max = max(t_max, end)
        ax.axvline(end, color="grey", linestyle="--", linewidth=0.8)
        start = round_end.get(rnd - 1, prev if prev is not None else 0.0) or 0.0
        ax.text(
            (start + end) / 2,
            1.01,
            f"round {rnd}",
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=8,
            color="grey",
        )
        prev = end

    for reason, pts in sorted(drops.items()):
        xs, ys = zip(*pts, strict=True)
        ax.scatter(
            xs,
            ys,
            marker=REASON_MARKERS.get(reason, "*"),
            s=60,
            color=DROP,
            edgecolor="black",
            linewidth=0.5,
            zorder=5,
            label=f"dropped: {reason}",
        )

    div, unit = time_scale(t_max)
    if div != 1.0:
        ax.xaxis.set_major_formatter(lambda v, _pos: f"{v / div:g}")
    ax.set_xlim(left=0.0 if not rounds or rounds[0] <= 1 else None)
    ax.set_yticks(range(len(clients)))
    ax.set_yticklabels(
        [f"client {c}" + (f" · {run.profiles[c]}" if c in run.profiles else "") for c in clients],
        fontsize=8,
    )
    ax.set_ylim(len(clients) - 0.5, -0.5)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_xlabel(f"simulated time ({unit})")
    title = "Client timeline, " + (
        f"rounds {rounds[0]}–{rounds[-1]}" if len(rounds) > 1 else f"round {rounds[0]}"
    )
    if len(clients) < len(clients_all):
        title += f" (first {len(clients)} of {len(clients_all)} clients)"
    ax.set_title(title, fontsize=12, loc="left", pad=20)

    from matplotlib.patches import Patch

    handles = [
        Patch(color=DOWN, label="download (model)"),
        Patch(color=COMPUTE, label="local training"),
        Patch(color=UP, label="upload (update)"),
    ]
    if cut_off:
        handles.append(Patch(facecolor="white", edgecolor=UP, hatch="////", label="upload cut off"))
    handles += ax.get_legend_handles_labels()[0]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), fontsize=8)
    return fig
