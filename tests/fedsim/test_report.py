"""`fedsim report` on a hand-written run directory: 5 rounds, 3 clients, a 6 s deadline
that client 2 (a straggler in round 3) misses, and client 1 going offline in round 5."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
from pathlib import Path
from types import SimpleNamespace

import matplotlib.image
import numpy as np
import pytest

from fedsim.errors import FedsimError
from fedsim.report.report import FIGURES, make_report, report_command
from fedsim.report.rundir import load_run

MODEL_WIRE, UPDATE_WIRE = 250_000, 62_600
ACCURACY = [0.42, 0.61, 0.70, 0.76, 0.79]
# Per client: download, compute and upload seconds (client 2's compute is slow in round 3).
DOWN, COMPUTE, UP = [0.2, 0.8, 0.9], [1.0, 3.0, 2.5], [0.2, 1.5, 1.6]
DEADLINE = 6.0


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_fake_run(run_dir: Path, *, summary: bool = True, traffic: bool = True) -> Path:
    run_dir.mkdir(parents=True)
    metrics, messages = [], []
    t0 = 0.0
    for rnd in range(1, 6):
        arrivals, timeline = [], []
        for c in range(3):
            compute = 4.0 if (rnd, c) == (3, 2) else COMPUTE[c]
            t_down = t0 + DOWN[c]
            t_comp = t_down + compute
            t_up = t_comp + UP[c]
            offline = (rnd, c) == (5, 1)
            timeline.append((c, t_down, t_comp, t_up, offline))
            if not offline:
                arrivals.append(t_up)
        # The round ends at the last arrival, or at the deadline if someone misses it.
        t_end = min(max(arrivals), t0 + DEADLINE)
        accepted = 0
        for c, t_down, t_comp, t_up, offline in timeline:
            base = {"round": rnd, "client": c, "wall_send": 0.0}
            messages.append(
                {
                    **base,
                    "seq": len(messages),
                    "kind": "model",
                    "src": "server",
                    "dst": f"client/{c}",
                    "codec": "fp32",
                    "payload_bytes": MODEL_WIRE - 40,
                    "wire_bytes": MODEL_WIRE,
                    "t_send": t0,
                    "t_deliver": t_down,
                    "dropped": False,
                    "reason": None,
                }
            )
            ok = not offline and t_up <= t_end
            accepted += ok
            reason = None if ok else ("offline" if offline else "deadline")
            messages.append(
                {
                    **base,
                    "seq": len(messages),
                    "kind": "update",
                    "src": f"client/{c}",
                    "dst": "server",
                    "codec": "q8",
                    "payload_bytes": UPDATE_WIRE - 40,
                    "wire_bytes": UPDATE_WIRE,
                    "t_send": None if offline else t_comp,
                    "t_deliver": t_up if ok else None,
                    "dropped": not ok,
                    "reason": reason,
                    "t_compute_end": None if offline else t_comp,
                }
            )
        metrics.append(
            {
                "round": rnd,
                "sim_time": t_end,
                "selected": 3,
                "aggregated": accepted,
                "dropped": 3 - accepted,
                "bytes_up": accepted * UPDATE_WIRE,
                "bytes_down": 3 * MODEL_WIRE,
                "train_loss": 1.5 / rnd,
                "test_accuracy": ACCURACY[rnd - 1],
                "test_loss": 1.2 / rnd,
                "bits_mean": 8.0,
                "energy_j": 40.0 + rnd,
                "wall_time": 0.5,
            }
        )
        t0 = t_end
    _jsonl(run_dir / "metrics.jsonl", metrics)
    if traffic:
        _jsonl(run_dir / "traffic.jsonl", messages)
    if summary:
        up = sum(m["bytes_up"] for m in metrics)
        (run_dir / "summary.json").write_text(
            json.dumps(
                {
                    "scenario": "fake",
                    "seed": 0,
                    "rounds": 5,
                    "final_accuracy": ACCURACY[-1],
                    "best_accuracy": max(ACCURACY),
                    "sim_time_total": t0,
                    "wall_time_total": 2.5,
                    "bytes_up_total": up,
                    "bytes_down_total": 15 * MODEL_WIRE,
                    "model_params": 62_000,
                    "model_sha256": "ab" * 32,
                    "codec": {"uplink": "q8", "downlink": "fp32"},
                    "energy_j_total": sum(m["energy_j"] for m in metrics),
                    "versions": {"fedsim": "0.1.0", "numpy": "2.0", "torch": "2.9"},
                }
            )
        )
    devices = [
        {"client": c, "profile": p} for c, p in enumerate(["laptop-wifi", "phone-4g", "phone-4g"])
    ]
    (run_dir / "devices.json").write_text(json.dumps({"devices": devices}))
    (run_dir / "scenario.toml").write_text('name = "fake"\nseed = 0\nrounds = 5\n')
    return run_dir


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The report of the fake run, rendered once through the CLI glue: (report.md, stdout)."""
    run_dir = write_fake_run(tmp_path_factory.mktemp("report") / "run")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert report_command(SimpleNamespace(run_dir=str(run_dir))) == 0
    return run_dir / "report.md", out.getvalue()


@pytest.fixture()
def report(rendered: tuple[Path, str]) -> Path:
    return rendered[0]


def _is_drawn(png: Path) -> None:
    img = matplotlib.image.imread(png)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300, png.name
    gray = img[..., :3].mean(axis=2)
    assert float(np.var(gray)) > 2e-3, f"{png.name} looks blank"
    # Something besides black text on white: the data is drawn in colour.
    spread = img[..., :3].max(axis=2) - img[..., :3].min(axis=2)
    assert float((spread > 0.2).mean()) > 1e-3, f"{png.name} has no coloured data"


def test_every_figure_is_written_and_drawn(report: Path) -> None:
    pngs = sorted((report.parent / "plots").glob("*.png"))
    assert {p.name for p in pngs} == {name for name, _, _ in FIGURES}
    for png in pngs:
        _is_drawn(png)


def test_markdown_references_every_figure_and_the_summary(report: Path) -> None:
    text = report.read_text()
    for png in (report.parent / "plots").glob("*.png"):
        assert f"](plots/{png.name})" in text
    assert "| final test accuracy | 79.00% |" in text
    assert "| best test accuracy | 79.00% (round 5) |" in text
    assert "| update | deadline | 1 |" in text
    assert "| update | offline | 1 |" in text


def test_html_is_self_contained(report: Path) -> None:
    text = report.with_suffix(".html").read_text()
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    pngs = sorted((report.parent / "plots").glob("*.png"))
    assert sorted(base64.b64decode(e) for e in embedded) == sorted(p.read_bytes() for p in pngs)
    assert 'src="plots/' not in text and "79.00%" in text


def test_torn_last_lines_are_ignored(tmp_path: Path) -> None:
    run_dir = write_fake_run(tmp_path / "run")
    for name in ("metrics.jsonl", "traffic.jsonl"):
        with open(run_dir / name, "a") as fh:
            fh.write('{"round": 6, "sim_ti')
    run = load_run(run_dir)
    assert len(run.metrics) == 5 and len(run.traffic) == 30


def test_unfinished_run_without_traffic_log(tmp_path: Path) -> None:
    run_dir = write_fake_run(tmp_path / "run", summary=False, traffic=False)
    with open(run_dir / "metrics.jsonl", "a") as fh:
        fh.write('{"round": 6, "sim_ti')
    text = make_report(run_dir).read_text()
    assert "No summary.json" in text and "| rounds | 5 |" in text
    assert "| best test accuracy | 79.00% (round 5) |" in text
    names = {p.name for p in (run_dir / "plots").glob("*.png")}
    assert "client_timeline.png" not in names and "accuracy_vs_time.png" in names


def test_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(FedsimError, match="no metrics.jsonl"):
        make_report(tmp_path)
    with pytest.raises(FedsimError, match="no such directory"):
        make_report(tmp_path / "missing")
    (tmp_path / "variant-a").mkdir()
    (tmp_path / "variant-a" / "metrics.jsonl").write_text("")
    with pytest.raises(FedsimError, match="experiment folder") as e:
        make_report(tmp_path)
    assert "\n" not in str(e.value)


def test_report_command_says_where(rendered: tuple[Path, str]) -> None:
    md, out = rendered
    assert str(md) in out and str(md.with_suffix(".html")) in out and "(7 figures)" in out


def test_report_of_a_real_short_run(tmp_path: Path) -> None:
    """The same checks on a run the simulator really made (heterogeneous devices, so the
    timeline has drops), through the CLI."""
    from fedsim.cli import main

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "het"
    args = [
        "run",
        str(root / "scenarios" / "heterogeneous.toml"),
        "--out",
        str(out),
        "--quiet",
        "--rounds",
        "3",
        "--set",
        "train.local_steps=2",
        "--set",
        "clients.count=24",
    ]
    assert main(args) == 0
    assert main(["report", str(out)]) == 0
    pngs = sorted((out / "plots").glob("*.png"))
    assert len(pngs) >= 5
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for png in pngs:
        _is_drawn(png)
        assert f"plots/{png.name}" in md
    assert html.count("data:image/png;base64,") == len(pngs)
