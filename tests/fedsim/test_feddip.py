"""FedDIP: schedules, ERK, staircase λ, nested (faithful) vs regrowing masks, error
feedback mass conservation, and a short end-to-end run through the CLI."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fedsim.codecs.pipeline import decode_tensors

from fedsim.algorithms.base import ClientResult, ClientUpdate, Uplink
from fedsim.algorithms.feddip import (
    FedDIP,
    FedDIPOptions,
    erk_densities,
    global_magnitude_mask,
    is_prunable,
    sparsity_at,
    staircase_lambda,
)
from fedsim.cli import main


def algo(mode: str, rounds: int = 10, **kw) -> FedDIP:
    sc = SimpleNamespace(rounds=rounds, train=SimpleNamespace(lr=0.1))
    return FedDIP(sc, FedDIPOptions(mode=mode, **kw))


def test_schedule_matches_paper_points():
    s = [sparsity_at(t, 1000, 0.5, 0.95) for t in (0, 100, 500, 999, 1000)]
    assert s[0] == pytest.approx(0.5)
    assert s[1] == pytest.approx(0.62, abs=0.005)
    assert s[2] == pytest.approx(0.89, abs=0.005)
    assert s[3] == pytest.approx(0.95, abs=1e-6)
    assert s[4] == pytest.approx(0.95)
    assert all(a <= b for a, b in zip(s[:-1], s[1:], strict=True))


def test_ramp_end_reaches_target_at_chosen_round():
    """ramp_end = R: s_t = s_p + (s_0 − s_p)(1 − t/R)^3 up to R, then s_p; λ keeps T."""
    a = algo("regrow", rounds=50, target_sparsity=0.95, ramp_end=25)
    assert a.target(0) == pytest.approx(0.5)
    assert a.target(5) == pytest.approx(0.95 - 0.45 * 0.8**3)  # 0.7196
    assert a.target(10) == pytest.approx(0.95 - 0.45 * 0.6**3)  # 0.8528
    assert a.target(24) == pytest.approx(0.95 - 0.45 * 0.04**3)
    assert [a.target(t) for t in (25, 26, 40, 50)] == pytest.approx([0.95] * 4)
    assert a.lam(24) == staircase_lambda(24, 50) and a.lam(24) < 1e-3  # still rising over T
    # s_0 = 0.8: the same cubic from a higher start
    b = algo("regrow", rounds=50, target_sparsity=0.95, initial_sparsity=0.8, ramp_end=25)
    assert b.target(10) == pytest.approx(0.95 - 0.15 * 0.6**3)
    # default: the code's ramp over all T rounds
    c = algo("regrow", rounds=50, target_sparsity=0.95)
    assert c.target(25) == pytest.approx(0.95 - 0.45 * 0.5**3) and c.target(50) == 0.95
    # the mean density of the 50 rounds' uplink targets, the figure the byte budget rests on:
    # 0.05 + 0.45 · Σ_{j<25} (j/25)^3 / 50, with Σ_{j=1}^{24} j^3 = (24·25/2)^2
    mean_density = np.mean([1 - a.target(r) for r in range(1, 51)])
    assert mean_density == pytest.approx(0.05 + 0.45 * (300**2 / 25**3) / 50)


def test_faithful_reprunes_every_round_from_ramp_end():
    """Faithful re-prunes on prune_every rounds and on every round from R on, so the nested
    mask reaches s_p at R even when R is not a multiple of prune_every."""
    a = algo("faithful", rounds=8, prune_every=5, ramp_end=3, target_sparsity=0.9)
    rng = np.random.default_rng(4)
    g = {k: np.zeros(s, np.float32) for k, s in SHAPES.items()}
    spars = []
    for rnd in range(1, 6):
        g = a.aggregate(rnd, g, results_from(rng, SHAPES))
        spars.append(a.after_aggregate(rnd, g, results_from(rng, SHAPES))["sparsity"])
    assert spars[1] == pytest.approx(spars[0])  # round 2: no re-prune, mask kept
    assert spars[2] == pytest.approx(0.9, abs=2e-3)  # round 3 = R
    assert spars[3] == pytest.approx(0.9, abs=2e-3)


def test_erk_densities_follow_sum_over_prod():
    shapes = {"conv1": (32, 1, 5, 5), "conv2": (64, 32, 5, 5), "fc1": (512, 3136), "fc2": (10, 512)}
    d = erk_densities(shapes, 0.02)
    n = {k: np.prod(s) for k, s in shapes.items()}
    assert sum(d[k] * n[k] for k in shapes) == pytest.approx(0.02 * sum(n.values()), rel=1e-9)
    # below the cap, density / (sum(shape)/prod(shape)) is one constant
    ratios = {k: d[k] / (sum(s) / n[k]) for k, s in shapes.items() if d[k] < 1.0}
    assert len(ratios) == 4
    vals = list(ratios.values())
    assert max(vals) == pytest.approx(min(vals), rel=1e-9)
    # layers that would exceed 1 are dense, and the budget still holds
    d = erk_densities(shapes, 0.5)
    assert d["conv1"] == 1.0
    assert sum(d[k] * n[k] for k in shapes) == pytest.approx(0.5 * sum(n.values()), rel=1e-9)
    assert all(0 < v <= 1 for v in d.values())


def test_staircase_lambda():
    lams = [staircase_lambda(t, 1000) for t in range(1000)]
    steps = sorted(set(lams))
    assert len(steps) == 20
    assert lams[0] == 0.0 and lams[49] == 0.0
    assert lams[50] == pytest.approx(5e-4)
    assert lams[999] == pytest.approx(1e-3)
    assert all(a <= b for a, b in zip(lams[:-1], lams[1:], strict=True))
    assert all(5e-4 <= x <= 1e-3 for x in steps[1:])


def test_prunable_names():
    assert is_prunable("features.3.weight", (64, 32, 5, 5))
    assert is_prunable("classifier.1.weight", (512, 3136))
    assert not is_prunable("features.3.bias", (64,))
    assert not is_prunable("bn1.weight", (64,))
    assert not is_prunable("layer2.0.shortcut.0.weight", (128, 64, 1, 1))


def results_from(rng, shapes, scale=None):
    out = []
    for c in range(3):
        t = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
        if scale is not None:
            t = {k: v * scale.get(k, 1.0) for k, v in t.items()}
        out.append(ClientResult(c, t, 10 + c, 0.0, {"values_up": 1.0}))
    return out


SHAPES = {"a.weight": (20, 30), "b.weight": (10, 40), "b.bias": (10,)}


def test_faithful_masks_nested_and_regrow_returns():
    rng = np.random.default_rng(0)
    for mode in ("faithful", "regrow"):
        a = algo(mode, rounds=8, prune_every=2)
        g = {k: np.zeros(s, np.float32) for k, s in SHAPES.items()}
        masks, regrown = [], 0
        for rnd in range(1, 9):
            # each round, a different random half of the weights is large
            scale = {"a.weight": np.where(rng.random(SHAPES["a.weight"]) < 0.5, 10.0, 1.0)}
            g = a.aggregate(rnd, g, results_from(rng, SHAPES, scale))
            row = a.after_aggregate(rnd, g, results_from(rng, SHAPES))
            masks.append({k: v.copy() for k, v in a.mask.items()})
            if mode == "regrow" or rnd == 1 or rnd % 2 == 0:  # faithful: prune rounds only
                assert row["sparsity"] == pytest.approx(a.target(rnd), abs=2e-3)
            else:
                assert row["sparsity"] <= a.target(rnd)
            assert np.count_nonzero(g["b.bias"]) == 10  # biases stay dense
            regrown += row.get("mask_regrown", 0)
        for old, new in zip(masks[:-1], masks[1:], strict=True):
            nested = all(not (new[k] & ~old[k]).any() for k in new)
            if mode == "faithful":
                assert nested
        if mode == "regrow":
            assert regrown > 0


def test_global_magnitude_mask_keeps_largest():
    t = {"x": np.array([[0.1, -5.0], [3.0, 0.2]], np.float32), "y": np.array([[-4.0, 0.0]])}
    m = global_magnitude_mask(t, 0.5)
    assert m["x"].tolist() == [[False, True], [True, False]] and m["y"].tolist() == [[True, False]]
    m = global_magnitude_mask(t, 0.5, {"x": np.ones((2, 2), bool), "y": np.zeros((1, 2), bool)})
    assert m["y"].sum() == 0 and m["x"].sum() == 3


def ctx_for(config, masks=None, global_state=None):
    return SimpleNamespace(
        config=config, cache={"masks": masks or {}}, round=3, global_state=global_state or {}
    )


def test_regrow_error_feedback_conserves_mass():
    """What the server reads (sent values, its own global value where nothing was sent) plus
    the new residual equals the global plus the client's change plus the old residual."""
    a = algo("regrow")
    rng = np.random.default_rng(1)
    glob = {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}
    local = {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}
    old = {
        k: {"residual": rng.standard_normal(s).astype(np.float32)}
        for k, s in SHAPES.items()
        if k.endswith("weight")
    }
    upd = ClientUpdate(tensors=local, num_samples=5, train_loss=0.0)
    ctx = ctx_for({"s_upload": 0.9}, global_state=glob)
    enc = a.encode_update(ctx, upd, Uplink("feddip", rng, old))
    records, state, metrics = enc.records, enc.state, enc.metrics
    sent = decode_tensors(records)
    kept = 0
    for k in SHAPES:
        if k in old:
            read = np.where(sent[k] != 0, sent[k], glob[k])
            np.testing.assert_allclose(
                read + state[k]["residual"], local[k] + old[k]["residual"], atol=1e-5
            )
            kept += np.count_nonzero(sent[k])
            assert not ((sent[k] != 0) & (state[k]["residual"] != 0)).any()
        else:
            np.testing.assert_array_equal(sent[k], local[k])  # dense, no residual
            assert k not in state
    n = sum(np.prod(s) for k, s in SHAPES.items() if k in old)
    assert kept == round(0.1 * n)
    assert metrics["values_up"] == kept + 10


def test_faithful_upload_is_masked_weights():
    a = algo("faithful")
    rng = np.random.default_rng(2)
    local = {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}
    masks = {k: torch.from_numpy(rng.random(s) < 0.2) for k, s in SHAPES.items() if len(s) == 2}
    upd = ClientUpdate(tensors=local, num_samples=5, train_loss=0.0)
    enc = a.encode_update(ctx_for({}, masks), upd, Uplink("feddip", rng, {}))
    records, state = enc.records, enc.state
    sent = decode_tensors(records)
    assert state == {}
    for k, m in masks.items():
        np.testing.assert_array_equal(sent[k], np.where(m.numpy(), local[k], 0))
    kinds = {r.params.get("mask") for r in records if r.name in masks}
    assert kinds <= {"index", "bitmap", "golomb"}


def test_faithful_round_one_uploads_and_averages_dense_weights():
    """Round 1 (clients on their own random ERK masks): faithful uploads the dense local
    weights and the server averages them, as the authors' code does; the kept weights are
    the dense mean, not a mean with each client's unmasked positions as zeros."""
    a = algo("faithful", rounds=10, target_sparsity=0.9)
    rng = np.random.default_rng(3)
    shapes = {"a.weight": (20, 30), "a.bias": (20,)}
    uploads = []
    for c in range(3):
        local = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
        erk = {"a.weight": torch.from_numpy(rng.random(shapes["a.weight"]) < 0.5)}
        ctx = ctx_for({}, erk)
        ctx.round = 1
        upd = ClientUpdate(tensors=local, num_samples=10 * (c + 1), train_loss=0.0)
        enc = a.encode_update(ctx, upd, Uplink("feddip", rng, {}))
        sent = decode_tensors(enc.records)
        np.testing.assert_array_equal(sent["a.weight"], local["a.weight"])  # dense
        assert enc.metrics["values_up"] == 620
        uploads.append(ClientResult(c, sent, 10 * (c + 1), 0.0, {}))
    g = a.aggregate(1, {k: np.zeros(s, np.float32) for k, s in shapes.items()}, uploads)
    dense_mean = sum(r.num_samples * r.tensors["a.weight"] for r in uploads) / 60
    kept = a.mask["a.weight"]
    assert kept.sum() == round((1 - a.target(1)) * 600)
    np.testing.assert_allclose(g["a.weight"][kept], dense_mean[kept], rtol=1e-5)
    assert (g["a.weight"][~kept] == 0).all()
    # from round 2 on the upload is w ⊙ m again
    ctx = ctx_for({}, {"a.weight": torch.from_numpy(kept)})
    upd = ClientUpdate(tensors=uploads[0].tensors, num_samples=10, train_loss=0.0)
    sent = decode_tensors(a.encode_update(ctx, upd, Uplink("feddip", rng, {})).records)
    assert np.count_nonzero(sent["a.weight"]) == kept.sum()


SMALL = """
name = "fd"
seed = 1
rounds = 4
[data]
dataset = "mnist5k"
partition = "dirichlet"
alpha = 0.5
min_size = 20
[model]
name = "cnn"
args = {{ channels = [4, 8], hidden = 32 }}
[clients]
count = 6
per_round = 2
[train]
local_steps = 4
batch_size = 20
lr = 0.05
[algorithm]
name = "feddip"
mode = "{mode}"
target_sparsity = 0.9
prune_every = 2
[eval]
every = 2
"""


@pytest.mark.parametrize("mode", ["regrow", "faithful"])
def test_end_to_end_sparse_both_ways(tmp_path, mode):
    scen = tmp_path / "s.toml"
    scen.write_text(SMALL.format(mode=mode))
    out = tmp_path / "out"
    assert main(["run", str(scen), "--out", str(out), "--quiet"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert rows[-1]["test_accuracy"] is not None
    # from round 2 on the model goes down sparse and updates come up sparse
    dense = rows[0]["bytes_down"] / rows[0]["aggregated"]
    for r in rows[1:]:
        assert r["bytes_down"] / r["aggregated"] < 0.6 * dense
        assert r["bytes_up"] / r["aggregated"] < 0.6 * dense
        assert r["down_bytes_exact"] <= r["down_bytes_runtime"]
    if mode == "faithful":
        assert all(r.get("mask_nested", True) for r in rows)


def test_downlink_sends_exact_per_tensor_records(tmp_path):
    """The pruned model goes down as per-tensor sparse records (encode_payload hook): the
    real model messages are the method's exact records (plus the round's header fields),
    smaller than one shared top-k spec for every tensor."""
    import json
    from pathlib import Path

    from fedsim.cli import main

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "fd"
    args = [
        "run",
        str(root / "scenarios" / "feddip.toml"),
        "--variant",
        "feddip_0.95",
        "--rounds",
        "3",
        "--out",
        str(out),
        "--quiet",
        "--set",
        "train.local_steps=2",
    ]
    assert main(args) == 0
    run = out / "feddip_0.95"
    metrics = [json.loads(line) for line in open(run / "metrics.jsonl")]
    traffic = [json.loads(line) for line in open(run / "traffic.jsonl")]
    for m in metrics[:-1]:
        sent = {
            t["wire_bytes"]
            for t in traffic
            if t["kind"] == "model" and t["round"] == m["round"] + 1
        }
        assert len(sent) == 1
        (b,) = sent
        assert m["down_bytes_exact"] <= b <= m["down_bytes_exact"] + 256
        assert b < m["down_bytes_runtime"]


def test_keep_global_mean_reads_unsent_as_no_change():
    import numpy as np

    from fedsim.algorithms.base import ClientResult
    from fedsim.algorithms.feddip import keep_global_mean

    g = {
        "w.weight": np.array([[1.0, 0.0], [0.0, 2.0]], np.float32),
        "w.bias": np.zeros(2, np.float32),
    }
    a = np.array([[3.0, 0.0], [0.0, 0.0]], np.float32)  # client 0 changed (0,0), sent nothing else
    b = np.array([[0.0, 5.0], [0.0, 2.0]], np.float32)  # client 1 regrew (0,1), kept (1,1)
    res = [
        ClientResult(0, {"w.weight": a, "w.bias": np.ones(2, np.float32)}, 1, 0.0, {}),
        ClientResult(1, {"w.weight": b, "w.bias": np.zeros(2, np.float32)}, 3, 0.0, {}),
    ]
    out = keep_global_mean(res, g)
    np.testing.assert_allclose(out["w.weight"], [[(3 + 3) / 4, 15 / 4], [0.0, 2.0]])
    np.testing.assert_allclose(out["w.bias"], [0.25, 0.25])


@pytest.mark.slow
def test_faithful_with_ramp_end_resumes_to_the_same_hash(tmp_path):
    """The server mask is declared state: faithful with a ramp ending mid-run, killed after
    its round-2 checkpoint and resumed, ends with the uninterrupted run's model and logs."""
    import subprocess
    import sys
    from pathlib import Path

    from fedsim.runtime.jsonl import read_jsonl

    doc = {
        "name": "fd-resume",
        "seed": 5,
        "rounds": 4,
        "data": {"dataset": "mnist5k"},
        "model": {"name": "mlp", "args": {"hidden": [32]}},
        "clients": {"count": 6, "per_round": 3},
        "train": {"local_steps": 2, "batch_size": 16},
        "runtime": {"checkpoint_every": 1},
        "algorithm": {
            "name": "feddip",
            "mode": "faithful",
            "ramp_end": 3,
            "prune_every": 2,
            "target_sparsity": 0.9,
        },
    }
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps({"fd": doc}))
    driver = Path(__file__).with_name("combo_driver.py")
    for mode in ("inproc", "resume"):
        subprocess.run(
            [sys.executable, str(driver), str(cases), str(tmp_path / mode), mode],
            check=True,
            capture_output=True,
            timeout=600,
        )
    a, b = tmp_path / "inproc" / "fd", tmp_path / "resume" / "fd"
    sha = [json.loads((d / "summary.json").read_text())["model_sha256"] for d in (a, b)]
    assert sha[0] == sha[1]

    def strip(rows):
        return [{k: v for k, v in r.items() if not k.startswith("wall_")} for r in rows]

    ma = strip(read_jsonl(a / "metrics.jsonl"))
    assert ma == strip(read_jsonl(b / "metrics.jsonl"))
    assert strip(read_jsonl(a / "traffic.jsonl")) == strip(read_jsonl(b / "traffic.jsonl"))
    assert [r["sparsity"] for r in ma][2:] == pytest.approx([0.9, 0.9], abs=2e-3)
