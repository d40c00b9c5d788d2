"""Repeats (issue 19 item 1): `fedsim run --seeds`, the `seeds`/`repeats` scenario keys,
one folder per seed, and comparisons as mean ± std over the seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tomllib

import fedsim
from fedsim.cli import main
from fedsim.errors import ScenarioError
from fedsim.report.compare import build_comparison, render_comparison
from fedsim.report.plots import seed_band

# mnist5k, an MLP with one hidden layer of 16, 4 clients, 2 rounds of 2 local steps
TINY = """
name = "tiny"
rounds = 2
[data]
dataset = "mnist5k"
[model]
name = "mlp"
args = { hidden = [16] }
[clients]
count = 4
per_round = 4
[train]
local_steps = 2
"""
VARIANTS = """
[[variants]]
name = "fp32"

[[variants]]
name = "q4"
codec = { uplink = "q4:stochastic" }
"""
FIGURES = ("final_accuracy", "best_accuracy", "bytes_up_total", "sim_time_total")


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _check_group(group: dict, runs: list[Path]) -> None:
    """The group's mean and std are numpy's over the per-seed summary values."""
    for key in FIGURES:
        values = [_summary(r)[key] for r in runs]
        assert group[key]["values"] == values
        assert group[key]["mean"] == pytest.approx(np.mean(values), rel=1e-12, abs=0)
        assert group[key]["std"] == pytest.approx(np.std(values), rel=1e-12, abs=1e-15)


def test_cli_seeds_one_folder_per_seed(scenario_file, tmp_path, capsys):
    path = scenario_file(TINY)
    out = tmp_path / "out"
    assert main(["run", str(path), "--seeds", "0,1,2", "--out", str(out), "--quiet"]) == 0
    runs = [out / f"seed-{s}" for s in (0, 1, 2)]
    hashes = [_summary(r)["model_sha256"] for r in runs]
    assert len(set(hashes)) == 3
    for s, r in enumerate(runs):
        assert _summary(r)["seed"] == s
        saved = tomllib.loads((r / "scenario.toml").read_text())
        assert saved["seed"] == s and "seeds" not in saved  # it reruns exactly this seed

    comp = json.loads((out / "comparison.json").read_text())
    assert [row["run"] for row in comp["rows"]] == ["seed-0", "seed-1", "seed-2"]
    (group,) = comp["groups"]
    assert group["run"] == "out" and group["seeds"] == [0, 1, 2] and group["n"] == 3
    _check_group(group, runs)
    # to-target: over the seeds that reach it, and how many do
    reached = [row["bytes_to_target"] for row in comp["rows"] if row["rounds_to_target"]]
    assert group["reached"] == len(reached) >= 1
    assert group["bytes_to_target"]["mean"] == pytest.approx(np.mean(reached))
    md = (out / "comparison.md").read_text()
    assert "Mean ± std over seeds" in md and "ddof = 0" in md and "min to max" in md
    assert (out / "accuracy_vs_round.png").is_file()

    # the same seed without --seeds: the single-run layout, unchanged, and the same model
    single = tmp_path / "single"
    assert main(["run", str(path), "--seed", "1", "--out", str(single), "--quiet"]) == 0
    assert _summary(single)["model_sha256"] == hashes[1]
    assert not (single / "seed-1").exists() and not (single / "comparison.json").exists()

    # fedsim report on the seeds folder
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "Mean ± std over seeds" in report and hashes[2] in report
    assert (out / "plots" / "accuracy_vs_time.png").is_file()

    # fedsim compare on it: mean ± std in the table, {mean, std, values} in json
    capsys.readouterr()
    args = ["compare", str(out), "--out", str(tmp_path / "cmp"), "--format", "json"]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    _check_group(printed["groups"][0], runs)
    assert len(printed["rows"]) == 3


def test_variants_times_seeds_from_the_file(scenario_file, tmp_path, capsys):
    path = scenario_file(TINY.replace("rounds = 2", "rounds = 2\nseeds = [0, 1]") + VARIANTS)
    out = tmp_path / "exp"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    runs = {v: [out / v / f"seed-{s}" for s in (0, 1)] for v in ("fp32", "q4")}
    assert all(r.is_dir() for rs in runs.values() for r in rs)
    comp = json.loads((out / "comparison.json").read_text())
    assert [g["run"] for g in comp["groups"]] == ["fp32", "q4"]
    for group in comp["groups"]:
        _check_group(group, runs[group["run"]])
    # q4 sends fewer bytes up than fp32, in every seed
    up = {g["run"]: g["bytes_up_total"]["values"] for g in comp["groups"]}
    assert all(q < f for q, f in zip(up["q4"], up["fp32"], strict=True))

    # --seeds overrides the file's seeds; --force clears the nested seed folders
    args = ["run", str(path), "--seeds", "3", "--variant", "q4", "--out", str(out), "--quiet"]
    assert main(args) == 2  # not empty
    assert main([*args, "--force"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["q4"]
    assert [p.name for p in (out / "q4").iterdir()] == ["seed-3"]

    # fedsim compare on two seeds folders: one group each
    capsys.readouterr()
    out2 = tmp_path / "exp2"
    assert main(["run", str(path), "--out", str(out2), "--quiet"]) == 0
    capsys.readouterr()
    cmp_dir = tmp_path / "cmp"
    assert main(["compare", str(out2 / "fp32"), str(out2 / "q4"), "--out", str(cmp_dir)]) == 0
    table = capsys.readouterr().out
    assert "mean ± std over seeds" in table and "±" in table
    groups = json.loads((cmp_dir / "compare.json").read_text())["groups"]
    assert [g["run"] for g in groups] == ["fp32", "q4"]
    _check_group(groups[1], [out2 / "q4" / "seed-0", out2 / "q4" / "seed-1"])
    # the experiment folder itself: its variants' seeds, compared into its own compare/
    assert main(["compare", str(out2)]) == 0
    groups = json.loads((out2 / "compare" / "compare.json").read_text())["groups"]
    assert [(g["run"], g["seeds"]) for g in groups] == [("fp32", [0, 1]), ("q4", [0, 1])]


def test_compare_groups_runs_that_differ_only_by_seed(scenario_file, tmp_path):
    """Separate run folders of one scenario with different seeds are repeats; runtime
    settings do not split them; a different scenario is not one of them."""
    path = scenario_file(TINY)
    for name, extra in [
        ("a", ["--seed", "0"]),
        ("b", ["--seed", "1", "--set", "runtime.torch_threads=1"]),
        ("c", ["--seed", "2", "--set", "train.lr=0.1"]),
    ]:
        assert main(["run", str(path), *extra, "--out", str(tmp_path / name), "--quiet"]) == 0
    comp = build_comparison([tmp_path / n for n in "abc"])
    assert [(g["run"], g["n"]) for g in comp.groups] == [("a+b", 2), ("c", 1)]
    _check_group(comp.groups[0], [tmp_path / "a", tmp_path / "b"])
    assert "a+b" in render_comparison(comp, "table")
    # two runs of the same seed are not repeats: no groups, the per-run table as before
    same = build_comparison([tmp_path / "a", tmp_path / "a"])
    assert same.groups == []


def _hand_run(run_dir: Path, accs: list[float], seed: int) -> None:
    run_dir.mkdir(parents=True)
    rows = [
        {"round": i + 1, "sim_time": 10.0 * (i + 1), "bytes_up": 100, "bytes_down": 1000}
        | {"test_accuracy": a}
        for i, a in enumerate(accs)
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run_dir / "summary.json").write_text(json.dumps({"seed": seed}))


def test_to_target_over_the_seeds_that_reach_it(tmp_path):
    folder = tmp_path / "v"
    _hand_run(folder / "seed-0", [0.5, 0.8, 0.9], 0)  # reaches 0.75 at round 2
    _hand_run(folder / "seed-1", [0.7, 0.75, 0.8], 1)  # at round 2
    _hand_run(folder / "seed-2", [0.4, 0.5, 0.6], 2)  # never
    comp = build_comparison([folder], target=0.75)
    (group,) = comp.groups
    assert group["reached"] == 2 and group["n"] == 3
    assert group["rounds_to_target"] == {"mean": 2.0, "std": 0.0, "values": [2, 2, None]}
    assert group["bytes_to_target"]["mean"] == 2200.0
    assert group["final_accuracy"]["mean"] == pytest.approx(np.mean([0.9, 0.8, 0.6]))
    assert "2/3" in render_comparison(comp, "table")
    flat = render_comparison(comp, "csv").splitlines()
    assert "final_accuracy_mean" in flat[0] and len(flat) == 2
    # the plotted band: mean, min and max over the seeds at each round
    xs, mean, lo, hi = seed_band(comp.runs, "round")
    assert xs == [1, 2, 3] and lo == [40, 50, 60] and hi == [70, 80, 90]
    assert mean == pytest.approx([160 / 3, 205 / 3, 230 / 3])


@pytest.mark.parametrize(
    "flags",
    [
        ["--seeds", "a,b"],
        ["--seeds", "0,0"],
        ["--seeds=-1"],
        ["--seeds", "0,,1"],
        ["--seed", "1", "--seeds", "0,1"],
    ],
)
def test_bad_seeds_flag(scenario_file, tmp_path, capsys, flags):
    path = scenario_file(TINY)
    assert main(["run", str(path), *flags, "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--seeds" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("seeds = [0, 0]", "seeds"),
        ("seeds = [-1]", "seeds"),
        ("seeds = []", "seeds"),
        ("seeds = [0]\nrepeats = 2", "repeats"),
        ("repeats = 0", "repeats"),
    ],
)
def test_bad_seeds_key(scenario_file, tmp_path, capsys, text, field):
    path = scenario_file(TINY.replace("rounds = 2", f"rounds = 2\n{text}"))
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: {field}:" in err


def test_api_uses_the_same_layout(scenario_file, tmp_path):
    path = scenario_file(TINY.replace("rounds = 2", "rounds = 1\nrepeats = 2"))
    exp = fedsim.run_experiment(path, out=tmp_path / "api")
    assert list(exp) == ["seed-0", "seed-1"]
    assert (tmp_path / "api" / "seed-1" / "summary.json").is_file()
    _check_group(exp.comparison["groups"][0], [exp[n].path for n in exp])
    cli = tmp_path / "cli"
    assert main(["run", str(path), "--out", str(cli), "--quiet"]) == 0
    assert _summary(cli / "seed-1")["model_sha256"] == exp["seed-1"].summary["model_sha256"]
    with pytest.raises(ScenarioError, match="run_experiment"):
        fedsim.run(path)
    with pytest.raises(ScenarioError, match="seeds"):
        fedsim.run_experiment(path, seeds=[2, 2])
