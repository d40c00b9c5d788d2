"""Write docs/results/neural_ode.md from real runs of scenarios/neural_ode.toml.

    python scripts/results_neural_ode.py            # run missing variants, then write the page
    python scripts/results_neural_ode.py --no-run   # only read existing run directories
    python scripts/results_neural_ode.py --rerun    # run every variant again

Runs go to runs/neural_ode/<variant> (one `fedsim run ... --variant` each, one torch
thread). Everything on the page is read from those runs' metrics.jsonl, traffic.jsonl and
summary.json, or counted from the model shapes (the CIFAR-10 table needs no data).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import tomllib

from fedsim.runtime.jsonl import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = "scenarios/neural_ode.toml"
RUNS = "runs/neural_ode"
PAGE = "docs/results/neural_ode.md"
IMG = "docs/results/img"
NS = (1, 2, 3, 4)
FLEX = ("odenet-n4", "odenet-mixed", "odenet-uniform-c1")
ORDER = [f"odenet-n{n}" for n in NS] + [f"resnet-n{n}" for n in NS] + list(FLEX[1:])
ORDER += ["odenet-n4-groupnorm"]
LONG = ("odenet-n4", "resnet-n4", "odenet-mixed", "odenet-uniform-c1")  # + LONG_ROUNDS rounds
LONG_ROUNDS = 30


def run_variant(name: str, runs: Path, rerun: bool, rounds: int | None = None) -> None:
    done = (runs / name / "summary.json").exists()
    if done and not rerun:
        return
    cmd = [sys.executable, "-m", "fedsim.cli", "run", SCENARIO, "--variant", name]
    cmd += ["--out", str(runs), "--force", "--quiet", "--summary"]
    cmd += ["--rounds", str(rounds)] if rounds else []
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def load_run(d: Path) -> dict | None:
    if not (d / "summary.json").exists():
        return None
    summary = json.loads((d / "summary.json").read_text())
    metrics = list(read_jsonl(d / "metrics.jsonl"))
    traffic = list(read_jsonl(d / "traffic.jsonl"))
    ups = [t for t in traffic if t["kind"] == "update"]
    downs = {(t["round"], t["client"]): t for t in traffic if t["kind"] == "model"}
    times = [m["sim_time"] for m in metrics]
    round_s = np.diff([0.0, *times])
    # compute seconds per client, by its device profile and the C it ran, from the log
    devices = {}
    if (d / "devices.json").exists():
        devices = {x["client"]: x for x in json.loads((d / "devices.json").read_text())["devices"]}
    by_c: dict[tuple[str, int], list[float]] = {}
    for m in metrics:
        cs = m.get("iterations_by_client") or {}
        for t in (u for u in ups if u["round"] == m["round"]):
            down = downs[(t["round"], t["client"])]
            c = int(cs.get(str(t["client"]), 0))
            prof = devices.get(t["client"], {}).get("profile", "?")
            by_c.setdefault((prof, c), []).append(t["t_compute_end"] - down["t_deliver"])
    evals = [m for m in metrics if m.get("test_accuracy") is not None]
    last = evals[-1]
    return {
        "summary": summary,
        "metrics": metrics,
        "params": summary["model_params"],
        "up_wire": int(np.median([t["wire_bytes"] for t in ups])),
        "up_payload": int(np.median([t["payload_bytes"] for t in ups])),
        "down_wire": int(np.median([t["wire_bytes"] for t in downs.values()])),
        "round_bytes": float(np.mean([m["bytes_up"] + m["bytes_down"] for m in metrics])),
        "round_s": float(np.mean(round_s)),
        "final_acc": summary["final_accuracy"],
        "best_acc": summary["best_accuracy"],
        "acc_c": {int(k[5:]): v for k, v in last.items() if k.startswith("acc_c")},
        "distinct": float(np.mean([m.get("ode_distinct_bytes_mean", np.nan) for m in metrics])),
        "unrolled": float(np.mean([m.get("ode_unrolled_bytes_mean", np.nan) for m in metrics])),
        "compute_by_c": {c: float(np.mean(v)) for c, v in sorted(by_c.items())},
        "c_counts": _c_counts(metrics),
        "device_flops": {x["profile"]: x["flops"] for x in devices.values()},
        "evals": [(m["round"], m["test_accuracy"]) for m in evals],
        "last3": float(np.mean([m["test_accuracy"] for m in evals[-3:]])),
        "last3_c": {
            c: float(np.mean([m[f"acc_c{c}"] for m in evals[-3:] if f"acc_c{c}" in m]))
            for c in (1, 2, 4)
            if any(f"acc_c{c}" in m for m in evals[-3:])
        },
    }


def _c_counts(metrics: list[dict]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for m in metrics:
        for c in (m.get("iterations_by_client") or {}).values():
            counts[int(c)] = counts.get(int(c), 0) + 1
    return dict(sorted(counts.items()))


def state_bytes(model) -> int:
    """fp32 bytes of the communicated state (floating parameters and buffers)."""
    from fedsim.algorithms.base import state_from_model

    return sum(v.nbytes for v in state_from_model(model).values())


def shape_bytes(ns, input_shape, width, stages, norm="group") -> list[tuple]:
    """(n, ODE-Net bytes, ResNet-n bytes, reduction) of the communicated fp32 state (= the
    distinct tensors an update carries), counted from the shapes."""
    from fedsim.models import ODENet, ResNet

    rows = []
    for n in ns:
        kw = {"blocks": n, "width": width, "stages": stages, "norm": norm}
        b_ode = state_bytes(ODENet(input_shape, 10, **kw))
        b_res = state_bytes(ResNet(input_shape, 10, **kw))
        rows.append((n, b_ode, b_res, 1 - b_ode / b_res))
    return rows


def train_flops(args: dict, c: int, batch: int) -> float:
    """Training FLOPs per sample of the scenario's ODE-Net run at C (as odefl counts them)."""
    from fedsim.models import ODENet
    from fedsim.runtime.flops import FlopModel

    kw = {k: v for k, v in args.items() if k in ("width", "stages", "norm", "solver")}
    model = ODENet((1, 28, 28), 10, blocks=max(4, c), **kw)
    model.set_iterations(c)
    return FlopModel(model, (1, 28, 28), batch).train_flops(1)


def split_bytes(input_shape, width, stages) -> tuple[int, int]:
    """(bytes outside the ODE blocks, bytes of one block per stage) of the fp32 parameters."""
    from fedsim.models import ODENet

    m = ODENet(input_shape, 10, blocks=1, width=width, stages=stages)
    block = sum(p.numel() for n, p in m.named_parameters() if n.startswith("body."))
    rest = sum(p.numel() for p in m.parameters()) - block
    return 4 * rest, 4 * block


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def kb(b: float) -> str:
    return f"{b:,.0f}"


def plots(runs: dict[str, dict], img: Path, mnist_rows, cifar_rows, mnist_label) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a report dependency
        return []
    img.mkdir(parents=True, exist_ok=True)
    made = []
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for rows, label in (
        (mnist_rows, mnist_label),
        (cifar_rows, "CIFAR-10 shapes (width 16, 3 stages, GroupNorm)"),
    ):
        ax.plot([r[0] for r in rows], [100 * r[3] for r in rows], "o-", label=label)
    ns = np.arange(1, max(r[0] for r in cifar_rows) + 1)
    ax.plot(ns, 100 * (1 - 1 / ns), "k:", label="bound 1 - 1/n")
    ax.axhline(85, color="r", lw=0.8, ls="--", label="PAPERS.md target 85%")
    ax.set_xlabel("blocks per stage n (ODE-Net C = n)")
    ax.set_ylabel("bytes saved vs ResNet-n (%)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(img / "ode_bytes.png", dpi=110)
    plt.close(fig)
    made.append("ode_bytes.png")

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name in ("odenet-n4", "resnet-n4", "odenet-mixed", "odenet-uniform-c1"):
        if name in runs:
            r = runs[name]
            xs = [m["sim_time"] for m in r["metrics"] if m.get("test_accuracy") is not None]
            ax.plot(xs, [a for _, a in r["evals"]], "o-", label=name)
    rounds = max(len(r["metrics"]) for r in runs.values())
    ax.set_title(f"global model, {rounds} rounds", fontsize=9)
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("test accuracy (ODE-Nets at C = 4)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(img / "ode_accuracy.png", dpi=110)
    plt.close(fig)
    made.append("ode_accuracy.png")
    return made


def write_page(
    runs: dict[str, dict], out: Path, scenario_text: str, long: dict[str, dict] | None = None
) -> str:
    doc = tomllib.loads(scenario_text)
    args, tr = doc["model"]["args"], doc["train"]
    w_, st_, norm_ = args["width"], args["stages"], args.get("norm", "group")
    mnist_rows = shape_bytes((1, 2, 3, 4, 6, 9, 12, 18), (1, 28, 28), w_, st_, norm_)
    cifar_rows = shape_bytes((1, 2, 3, 4, 6, 9, 12, 18), (3, 32, 32), 16, 3)
    rest, block = split_bytes((3, 32, 32), 16, 3)
    cifar = {r[0]: r[3] for r in cifar_rows}
    mnist_label = f"mnist5k shapes (width {w_}, {st_} stages, {norm_} norm)"
    images = plots(long or runs, ROOT / IMG, mnist_rows, cifar_rows, mnist_label)
    L: list[str] = []
    w = L.append
    w("# Neural-ODE FL: ODE-Net vs ResNet on the wire, and flexible FL\n")
    w(
        "Generated by `python scripts/results_neural_ode.py` from the runs of "
        f"`{SCENARIO}` in `{RUNS}/` (regenerate: run that command; `--rerun` retrains "
        'every variant). Method: `fedsim/algorithms/odefl.py` (`algorithm.name = "odefl"`); '
        "models: `fedsim/models/odenet.py`; paper and targets: PAPERS.md Sec. 3 "
        "(Hoshino, Kawakami, Matsutani, arXiv 2208.09478).\n"
    )
    w(
        f"Setup (every variant unless named): {doc['data']['dataset']}, "
        f"{doc['clients']['count']} clients, {doc['data']['partition']}"
        f"({doc['data'].get('alpha', '')}) label skew, {doc['clients']['per_round']} clients "
        f"per round, {doc['rounds']} rounds, {tr['local_epochs']} local epochs, batch "
        f"{tr['batch_size']}, SGD lr {tr['lr']} momentum {tr['momentum']}, "
        f"{doc['codec']['uplink']} both ways, Euler, h = 1/C, {norm_} norm "
        f"(per-iteration in the ODE block), width {w_}, {st_} stages (stem, then per stage an "
        "optional downsampler and an ODE block or n residual blocks, then the head); devices "
        "half laptop-wifi (100 GFLOP/s), half phone-4g (30 GFLOP/s). Bytes are the exact "
        "ZeroMQ wire bytes from traffic.jsonl; time is fedsim's simulated time (bytes over "
        "max-min shared links, counted training FLOPs over the device's FLOP/s).\n"
    )

    w("## 1. Bytes per round: ODE-Net (C = n) vs ResNet-n\n")
    w(
        "| n | model | parameters | update wire bytes / client | model wire bytes / client "
        "| bytes / round (up+down, 5 clients) | saved vs ResNet-n | final acc | "
        "sim. round (s) |"
    )
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for n in NS:
        o, r = runs.get(f"odenet-n{n}"), runs.get(f"resnet-n{n}")
        for name, x in ((f"ResNet-{n}", r), (f"ODE-Net C={n}", o)):
            if x is None:
                w(f"| {n} | {name} | (not run) | | | | | | |")
                continue
            saved = "" if x is r or r is None else pct(1 - x["round_bytes"] / r["round_bytes"])
            w(
                f"| {n} | {name} | {x['params']:,} | {kb(x['up_wire'])} | {kb(x['down_wire'])} "
                f"| {kb(x['round_bytes'])} | {saved} | {x['final_acc']:.3f} | {x['round_s']:.2f} |"
            )
    w("")
    o4, r4 = runs.get("odenet-n4"), runs.get("resnet-n4")
    if o4 is not None and not np.isnan(o4["distinct"]):
        same = r4 is not None and o4["unrolled"] == r4["distinct"]
        w(
            f'The ODE codec rule ("a tensor shared across iterations is sent once"): each '
            f"ODE-Net C=4 update carries {kb(o4['distinct'])} bytes of tensor data, exactly its "
            f"distinct fp32 tensors (the update's wire bytes, {kb(o4['up_wire'])}, add "
            f"{kb(o4['up_wire'] - o4['distinct'])} bytes of header and framing); a model paying "
            f"for every reuse would send {kb(o4['unrolled'])} bytes (`ode_unrolled_bytes_mean` "
            "in metrics.jsonl)"
            + (
                f", exactly what ResNet-4 sends ({kb(r4['distinct'])} bytes of tensors). "
                if same
                else ". "
            )
            + "Shared weights are single state entries, so the rule needs no codec: `odefl` "
            "sends each state tensor once and collapses aliased entries (tied weights) to one "
            "name, which the server re-expands (`tests/fedsim/test_odefl.py`).\n"
        )

    w("## 2. Why not >= 85% at n = 4\n")
    w(
        "One shared block per stage replaces n distinct ones, so ODE-Net saves "
        "(n-1)·B / (R + n·B) of ResNet-n's bytes, where B is one block per stage and R the "
        "stem, downsamplers and head. That is below 1 - 1/n for every n (75% at n = 4) and "
        "only reaches 85% when n is well above 4. Counted from the model shapes (fp32 "
        "bytes of the communicated state, no data needed; mnist5k with the scenario's norm, "
        "CIFAR-10 with the default GroupNorm):\n"
    )
    w(
        "| n | mnist5k ODE-Net | mnist5k ResNet-n | saved | CIFAR-10 ODE-Net | CIFAR-10 ResNet-n "
        "| saved | bound 1-1/n |"
    )
    w("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (n, a, b, s), (_, c, d, t) in zip(mnist_rows, cifar_rows, strict=True):
        w(
            f"| {n} | {kb(a)} | {kb(b)} | {pct(s)} | {kb(c)} | {kb(d)} | {pct(t)} | "
            f"{pct(1 - 1 / n)} |"
        )
    w("")
    w(
        f"CIFAR-10 shapes: 3 stages of width 16, 32, 64 (the CIFAR ResNet-6n+2 layout); "
        f"R = {kb(rest)} bytes, B = {kb(block)} bytes, so R is {pct(rest / block)} of B and "
        "the saving at n = 4 is 3B / (R + 4B). The first n with a saving of at least 85% is "
        + ", ".join(
            f"{label}: n = {next((r[0] for r in rows if r[3] >= 0.85), '> 18')}"
            for label, rows in (("CIFAR-10 shapes", cifar_rows), ("mnist5k shapes", mnist_rows))
        )
        + '. The paper\'s "about 90%" (up to 92.4% / 89.4%) therefore matches deeper '
        "counterparts: ResNet-56 has n = 9 blocks per stage, ResNet-74 n = 12 and ResNet-110 "
        f"n = 18 (6n+2 layers), which this table puts at {pct(cifar[9])}, {pct(cifar[12])} "
        f"and {pct(cifar[18])} on CIFAR-10 shapes. The PAPERS.md target of >= 85% at n = 4 "
        "is not reachable by any model of this family (one shared block per stage against n "
        'distinct ones); PAPERS.md should read "n = 12 (ResNet-74) or deeper" for the '
        "85-90% figure.\n"
    )
    if images:
        w("![bytes saved vs n](img/ode_bytes.png)\n")

    w("## 3. Accuracy\n")
    w("| n | ResNet-n final acc | ODE-Net final acc | difference (points) |")
    w("|---:|---:|---:|---:|")
    for n in NS:
        o, r = runs.get(f"odenet-n{n}"), runs.get(f"resnet-n{n}")
        if o and r:
            w(
                f"| {n} | {r['final_acc']:.3f} | {o['final_acc']:.3f} | "
                f"{100 * (o['final_acc'] - r['final_acc']):+.1f} |"
            )
    w("")
    w(
        "Accuracy is the global model's test accuracy after the last round (1,000 test digits, "
        f"so one point is 10 digits). With {doc['rounds']} short rounds the models are still learning; one "
        "seed, so differences of a few points are within run-to-run noise.\n"
    )

    w("## 4. Flexible FL: mixed C vs uniform C\n")
    w(
        "One ODE-Net built with C = 4. `odenet-n4`: every client runs C = 4 (uniform). "
        "`odenet-mixed`: each client's C comes from its device profile "
        "(`iterations_by_profile`: phone-4g 1, laptop-wifi 4) or, while the network model "
        "passes no device, from `iterations_mix = [1, 2, 4]` by client id. "
        "`odenet-uniform-c1`: every client runs C = 1. The server averages directly; the "
        "global model is evaluated at C = 1, 2 and 4.\n"
    )
    w(
        "| variant | C used (client-rounds) | acc C=1 | acc C=2 | acc C=4 | mean sim. round (s) "
        "| mean sim. compute per client, by device and C (s) |"
    )
    w("|---|---|---:|---:|---:|---:|---|")
    for name in FLEX:
        x = runs.get(name)
        if x is None:
            w(f"| {name} | (not run) | | | | | |")
            continue
        cc = ", ".join(f"C={c}: {k}" for c, k in x["c_counts"].items()) or "-"
        acc = [x["acc_c"].get(c) for c in (1, 2, 4)]
        accs = " | ".join("-" if a is None else f"{a:.3f}" for a in acc)
        comp = ", ".join(f"{p} C={c}: {s:.2f}" for (p, c), s in x["compute_by_c"].items())
        w(f"| {name} | {cc} | {accs} | {x['round_s']:.2f} | {comp} |")
    w("")
    u, m = runs.get("odenet-n4"), runs.get("odenet-mixed")
    if u and m:
        d_acc = 100 * (m["acc_c"].get(4, m["final_acc"]) - u["acc_c"].get(4, u["final_acc"]))
        d_t = m["round_s"] / u["round_s"]
        w(
            f"Mixed C vs uniform C = 4, evaluated at C = 4: {d_acc:+.1f} points "
            f"(target: no more than 1 point below; {'met' if d_acc >= -1 else 'not met'}); mean "
            f"simulated round {m['round_s']:.2f} s vs {u['round_s']:.2f} s "
            f"({pct(1 - d_t)} shorter).\n"
        )
        fl = {c: train_flops(args, c, tr["batch_size"]) for c in (1, 2, 4)}
        w(
            "Compute time follows C: training FLOPs per sample (FlopCounterMode, forward x 3) "
            + ", ".join(f"C = {c}: {f / 1e6:.2f} M" for c, f in fl.items())
            + f", so C = 1 costs {pct(fl[1] / fl[4])} of C = 4 (the stem, downsamplers and "
            "head do not scale with C)."
        )
        uc, mc = u["compute_by_c"], m["compute_by_c"]
        pairs = [(p, uc[(p, 4)], c, mc[(p, c)]) for (p, c) in mc if (p, 4) in uc and c != 4]
        for p, t4, c, tc in pairs:
            w(
                f"A {p} client computes {t4:.2f} s per round on average at C = 4 (uniform) "
                f"and {tc:.2f} s at C = {c} (mixed): {pct(tc / t4)} (the FLOP ratio is "
                f"{pct(fl[c] / fl[4])}; the clients selected differ in data size)."
            )
        w("")
        flops_of = {**u.get("device_flops", {}), **m.get("device_flops", {})}
        by_profile = set(m["c_counts"]) <= {1, 4} and flops_of
        speeds = ", ".join(f"{p} {f / 1e9:.0f} GFLOP/s" for p, f in sorted(flops_of.items()))
        w(
            "A synchronous round lasts as long as its slowest client. In these runs the "
            "network model passes each client's device profile to `client_config` "
            f"({speeds}), so "
            + (
                "the mixed variant ran phones at C = 1 and laptops at C = 4: the phones, the "
                "stragglers of the uniform run, do a fraction of the work, and the round ends "
                "when the slowest of them does. "
                if by_profile
                else "the mixed variant fell back to `iterations_mix` by client id. "
            )
            + "Uplink bytes are the same for every C (shapes do not depend on C), so the "
            "saving is all compute time. Accuracy: after this few rounds the models are far "
            "from converged and one seed is noisy; a higher mixed-C accuracy here is not "
            "evidence that fewer iterations help (Sec. 4c runs longer).\n"
        )
    g = runs.get("odenet-n4-groupnorm")
    if g and u:
        w("## 4b. Why the mnist5k runs use per-iteration BatchNorm\n")
        w(
            f"`odenet-n4-groupnorm` is `odenet-n4` with the default GroupNorm: final accuracy "
            f"{g['final_acc']:.3f} against {u['final_acc']:.3f} with per-iteration BatchNorm "
            f"after the same {len(u['metrics'])} rounds. `make_norm` uses min(32, channels) "
            "groups, so at widths 8-32 every group is one channel (instance norm), and the "
            "head's norm-ReLU-average-pool then keeps little more than each channel's shape "
            "statistics; the net learns, but far too slowly for a few-minute CPU scenario. "
            "GroupNorm with 2+ channels per group (width >= 64, as Chen et al.'s ODE-Net) or a "
            "`groups` model argument would avoid it (a change to fedsim/models, not made here). "
            "With BatchNorm the ODE block owns one norm pair per iteration, so ODE-Net's bytes "
            "grow slightly with C (Sec. 1 counts them) and clients can run any C up to the "
            "built one.\n"
        )
    if images:
        w("![accuracy vs simulated time](img/ode_accuracy.png)\n")

    if long:
        w(f"## 4c. Longer runs ({LONG_ROUNDS} rounds)\n")
        w(
            f"The same variants for {LONG_ROUNDS} rounds (`--rounds {LONG_ROUNDS}`, in "
            f"`{RUNS}_{LONG_ROUNDS}r/`), to see whether the gaps above close as the models "
            "converge.\n"
        )
        w(
            "Accuracies are means over the last three evaluations (rounds "
            f"{LONG_ROUNDS - 10}, {LONG_ROUNDS - 5}, {LONG_ROUNDS}): single evaluations of these "
            "non-IID BatchNorm runs swing by several points from one evaluation to the next.\n"
        )
        w(
            "| variant | acc C=1 | acc C=2 | acc C=4 | test acc (own C) | final | best "
            "| mean sim. round (s) | sim. time total (s) |"
        )
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, x in long.items():
            acc = " | ".join(
                "-" if x["last3_c"].get(c) is None else f"{x['last3_c'][c]:.3f}" for c in (1, 2, 4)
            )
            w(
                f"| {name} | {acc} | {x['last3']:.3f} | {x['final_acc']:.3f} "
                f"| {x['best_acc']:.3f} | {x['round_s']:.2f} "
                f"| {x['summary']['sim_time_total']:.1f} |"
            )
        w("")
        lo, lr_, lm = long.get("odenet-n4"), long.get("resnet-n4"), long.get("odenet-mixed")
        if lo and lr_:
            dd = 100 * (lo["last3"] - lr_["last3"])
            w(
                f"ODE-Net C=4 vs ResNet-4 over {LONG_ROUNDS} rounds: {dd:+.1f} points "
                f"(mean of the last three evaluations; best {100 * lo['best_acc']:.1f}% vs "
                f"{100 * lr_['best_acc']:.1f}%), for {pct(1 - lo['round_bytes'] / lr_['round_bytes'])} "
                "fewer bytes per round."
            )
        if lo and lm:
            dm = 100 * (lm["last3_c"].get(4, lm["last3"]) - lo["last3_c"].get(4, lo["last3"]))
            w(
                f"Mixed C vs uniform C = 4 over {LONG_ROUNDS} rounds, evaluated at C = 4: "
                f"{dm:+.1f} points; simulated time {lm['summary']['sim_time_total']:.1f} s vs "
                f"{lo['summary']['sim_time_total']:.1f} s for the same {LONG_ROUNDS} rounds."
            )
        l1 = long.get("odenet-uniform-c1")
        if lm and l1 and {1, 4} <= set(lm["last3_c"]) and {1, 4} <= set(l1["last3_c"]):
            w(
                "Mixed C is not just the cheap clients' model: trained only at C = 1, the "
                f"ODE-Net scores {l1['last3_c'][1]:.3f} at C = 1 but {l1['last3_c'][4]:.3f} at "
                f"C = 4, while the mixed-C model scores {lm['last3_c'][1]:.3f} and "
                f"{lm['last3_c'][4]:.3f}: merging models run at different C gives one model "
                "that works at every C it was trained at, in the same simulated time as "
                "everyone running C = 1."
            )
        w("")
    w("## 5. Gaps against PAPERS.md Sec. 3\n")
    rows4 = runs.get("odenet-n4"), runs.get("resnet-n4")
    lo = (long or {}).get("odenet-n4")
    lr_ = (long or {}).get("resnet-n4")
    lm = (long or {}).get("odenet-mixed")
    if all(rows4):
        s4 = 1 - rows4[0]["round_bytes"] / rows4[1]["round_bytes"]
        w(
            f"- Bytes at n = 4: measured {pct(s4)} saved on mnist5k shapes, "
            f"{pct(cifar_rows[3][3])} counted on CIFAR-10 shapes; target >= 85%. Not met, and "
            "not meetable at n = 4 (Sec. 2); 85% needs n = 12 (ResNet-74) on CIFAR-10 shapes."
        )
        d4 = 100 * (rows4[0]["final_acc"] - rows4[1]["final_acc"])
        line = (
            f"- Accuracy at n = 4 (target: within 2 points): ODE-Net {d4:+.1f} points vs "
            f"ResNet-4 after {doc['rounds']} rounds"
        )
        if lo and lr_:
            dd = 100 * (lo["last3"] - lr_["last3"])
            db = 100 * (lo["best_acc"] - lr_["best_acc"])
            line += (
                f", {dd:+.1f} points (mean of the last three evaluations) and {db:+.1f} "
                f"(best) after {LONG_ROUNDS} rounds"
            )
            ok = abs(dd) <= 2
        else:
            ok = abs(d4) <= 2
        w(
            line + f": {'met' if ok else 'not met'} on this evidence (one seed, mnist5k, "
            "width 8; CIFAR-10 was not trained on 2 CPU cores)."
        )
    if u and m:
        line = (
            f"- Mixed C (target: within 1 point of uniform C, shorter rounds): "
            f"{d_acc:+.1f} points after {doc['rounds']} rounds"
        )
        if lo and lm:
            dm = 100 * (lm["last3_c"].get(4, lm["last3"]) - lo["last3_c"].get(4, lo["last3"]))
            line += f", {dm:+.1f} points after {LONG_ROUNDS} rounds"
            ok = dm >= -1
        else:
            ok = d_acc >= -1
        w(
            line + f"; rounds {pct(1 - m['round_s'] / u['round_s'])} shorter in simulated time: "
            f"{'met' if ok and m['round_s'] < u['round_s'] else 'not met'}."
        )
    w(
        "- Not done: several seeds, CIFAR-10 training runs, RK4 in FL (the solver exists in the "
        "model and is unit-tested there), GroupNorm runs at width >= 64.\n"
    )
    w("## Scenario\n")
    w("```toml\n" + scenario_text.strip() + "\n```\n")
    text = "\n".join(L)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default=RUNS)
    p.add_argument("--out", default=PAGE)
    p.add_argument("--no-run", action="store_true", help="only read existing run directories")
    p.add_argument("--rerun", action="store_true", help="run every variant again")
    p.add_argument("--no-long", action="store_true", help=f"skip the {LONG_ROUNDS}-round runs")
    a = p.parse_args(argv)
    runs_dir = ROOT / a.runs
    long_dir = ROOT / f"{a.runs}_{LONG_ROUNDS}r"
    if not a.no_run:
        for name in ORDER:
            run_variant(name, runs_dir, a.rerun)
        for name in () if a.no_long else LONG:
            run_variant(name, long_dir, a.rerun, LONG_ROUNDS)
    runs = {n: r for n in ORDER if (r := load_run(runs_dir / n)) is not None}
    long = {n: r for n in LONG if (r := load_run(long_dir / n)) is not None}
    write_page(runs, ROOT / a.out, (ROOT / SCENARIO).read_text(), long)
    print(f"wrote {a.out} from {len(runs)} runs", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
