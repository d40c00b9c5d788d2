"""SCAFFOLD: one corrected local step by hand, option II's identity over many steps, the
server's x and c updates by hand, the declared state, and short runs through the CLI."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fedsim.algorithms import ALGORITHMS
from fedsim.algorithms.base import ClientContext, ClientResult, load_state
from fedsim.algorithms.scaffold import C_PREFIX, DC_PREFIX, Scaffold, option2_variate
from fedsim.cli import main
from fedsim.runtime import checkpoint as ckpt


def scenario(*, lr=0.1, steps=None, epochs=1, batch=1, momentum=0.0, decay=0.0, count=4, slr=1.0):
    return SimpleNamespace(
        train=SimpleNamespace(
            lr=lr,
            local_steps=steps,
            local_epochs=epochs,
            batch_size=batch,
            optimizer="sgd",
            momentum=momentum,
            weight_decay=decay,
        ),
        clients=SimpleNamespace(count=count),
        server=SimpleNamespace(server_lr=slr),
        codec=SimpleNamespace(uplink="fp32", downlink="fp32"),
    )


def context(model, x, y, sc, c, c_i, rnd=1) -> ClientContext:
    sd = model.state_dict()
    payload = {k: v.detach().numpy().copy() for k, v in sd.items()}
    payload.update({C_PREFIX + k: np.asarray(v, np.float32) for k, v in c.items()})
    return ClientContext(
        round=rnd,
        client_id=0,
        model=model,
        x=x,
        y=y,
        config={"lr": sc.train.lr},
        global_state=payload,
        seed=0,
        generator=torch.Generator().manual_seed(0),
        state={k: np.asarray(v, np.float32) for k, v in c_i.items()},
        scenario=sc,
    )


def test_registered_and_refuses_async():
    assert ALGORITHMS["scaffold"] is Scaffold
    assert "synchronous" in Scaffold(scenario()).async_refusal()


def test_one_corrected_step_by_hand():
    # W = 0: softmax is uniform, so for x = (1, 2), label 0 the gradient of the cross
    # entropy is (p − e_0) xᵀ = [[-0.5, -1], [0.5, 1]].
    model = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    sc = scenario(lr=0.1, steps=1)
    c = {"weight": [[0.1, 0.0], [0.0, -0.1]]}
    c_i = {"weight": [[0.2, 0.2], [0.0, 0.0]]}
    ctx = context(model, torch.tensor([[1.0, 2.0]]), torch.tensor([0]), sc, c, c_i)
    up = Scaffold(sc).local_train(ctx)
    # y = x − η (g − c_i + c) = −0.1 · [[-0.6, -1.2], [0.5, 0.9]]
    np.testing.assert_allclose(up.tensors["weight"], [[0.06, 0.12], [-0.05, -0.09]], atol=1e-7)
    # option II: c_i⁺ = c_i − c + (x − y)/(K η) = g; Δc = c_i⁺ − c_i
    np.testing.assert_allclose(up.state["weight"], [[-0.5, -1.0], [0.5, 1.0]], atol=1e-6)
    np.testing.assert_allclose(
        up.tensors[DC_PREFIX + "weight"], [[-0.7, -1.2], [0.5, 1.0]], atol=1e-6
    )
    assert set(up.tensors) == {"weight", DC_PREFIX + "weight"}


def test_first_participation_starts_from_zero_variate():
    model = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    sc = scenario(lr=0.1, steps=1)
    c = {"weight": np.zeros((2, 2))}
    ctx = context(model, torch.tensor([[1.0, 2.0]]), torch.tensor([0]), sc, c, {})  # no c_i yet
    up = Scaffold(sc).local_train(ctx)
    g = np.array([[-0.5, -1.0], [0.5, 1.0]])
    np.testing.assert_allclose(up.tensors["weight"], -0.1 * g, atol=1e-7)  # plain SGD step
    np.testing.assert_allclose(up.tensors[DC_PREFIX + "weight"], g, atol=1e-6)


def linear_problem(seed: int):
    """A 4-feature, 3-class linear model and 30 random samples (shared with test_fednova)."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(30, 4)).astype(np.float32))
    return model, x, torch.from_numpy(rng.integers(0, 3, 30)), rng


@pytest.mark.parametrize("decay", [0.0, 0.01])
def test_variate_is_option2_under_plain_sgd(decay):
    model, x, y, rng = linear_problem(1)
    sc = scenario(lr=0.05, epochs=2, batch=8, decay=decay)  # K = 2 · ⌈30/8⌉ = 8 steps
    c = {k: rng.normal(size=v.shape) * 0.1 for k, v in model.state_dict().items()}
    c_i = {k: rng.normal(size=v.shape) * 0.1 for k, v in model.state_dict().items()}
    ctx = context(model, x, y, sc, c, c_i)
    up = Scaffold(sc).local_train(ctx)
    for k in c:
        want = option2_variate(
            np.float32(c_i[k]), np.float32(c[k]), up.tensors[k], steps=8, lr=0.05
        )
        np.testing.assert_allclose(up.state[k], want, atol=2e-5)
        np.testing.assert_allclose(up.tensors[DC_PREFIX + k], want - np.float32(c_i[k]), atol=2e-5)


def result(cid, n, dy, dc):
    t = {"w": np.asarray(dy, np.float32), DC_PREFIX + "w": np.asarray(dc, np.float32)}
    return ClientResult(client_id=cid, tensors=t, num_samples=n, train_loss=0.0, metrics={})


@pytest.mark.parametrize("slr", [1.0, 0.5])
def test_server_update_by_hand(slr):
    algo = Scaffold(scenario(count=4, slr=slr))
    algo.c = {"w": np.array([0.5, -0.5], np.float32)}
    x = {"w": np.array([1.0, 2.0], np.float32)}
    plan = algo.configure_round(1, x)
    assert set(plan.payload) == {"w", C_PREFIX + "w"}
    np.testing.assert_array_equal(plan.payload[C_PREFIX + "w"], [0.5, -0.5])
    # uniform means (sample counts do not weigh): mean Δy = (0.3, 0.2), mean Δc = (0.5, 1)
    results = [result(3, 30, [0.4, 0.0], [0.0, 2.0]), result(0, 10, [0.2, 0.4], [1.0, 0.0])]
    new = algo.aggregate(1, x, results)
    assert set(new) == {"w"}  # c never enters the model
    np.testing.assert_allclose(new["w"], [1.0 + slr * 0.3, 2.0 + slr * 0.2], atol=1e-6)
    # c ← c + (|S|/N) mean Δc = (0.5, −0.5) + (2/4)(0.5, 1)
    np.testing.assert_allclose(algo.c["w"], [0.75, 0.0], atol=1e-7)
    assert algo.after_aggregate(1, new, results)["scaffold_c_norm"] == pytest.approx(0.75)


def test_server_variate_is_declared_state():
    algo = Scaffold(scenario())
    x = algo.init_global(torch.nn.Linear(3, 2))
    assert set(algo.c) == set(x) == {"weight", "bias"}
    assert all(not v.any() for v in algo.c.values())
    algo.c = {k: np.full(v.shape, 0.25, np.float32) for k, v in x.items()}
    meta, arrays = ckpt.pack_values("algo", algo.server_state())
    fresh = Scaffold(scenario())
    fresh.load_server_state(ckpt.unpack_values("algo", meta, arrays))
    for k in x:
        np.testing.assert_array_equal(fresh.c[k], algo.c[k])


def test_client_model_accepts_the_payload():
    # the client runner loads the decoded payload, control variates included, into the model
    model = torch.nn.Linear(3, 2)
    payload = {k: np.ones(tuple(v.shape), np.float32) for k, v in model.state_dict().items()}
    payload.update({C_PREFIX + k: np.full(v.shape, 7.0, np.float32) for k, v in payload.items()})
    load_state(model, payload)
    assert sorted(model.state_dict()) == ["bias", "weight"]
    assert all(bool((v == 1).all()) for v in model.state_dict().values())


# shared with test_fednova.py: local_epochs (not local_steps), so local step counts differ
SMALL = """
seed = 1
rounds = 3
[data]
dataset = "mnist5k"
partition = "dirichlet"
alpha = 0.5
min_size = 20
[model]
name = "mlp"
args = {hidden = [64]}
[clients]
count = 10
per_round = 4
[train]
local_epochs = 1
batch_size = 20
lr = 0.05
momentum = 0.5
[eval]
every = 1
"""


def short_runs(tmp: Path, algorithm: str) -> tuple[dict, dict, list[dict]]:
    """The same 3-round scenario twice in process: (summary, summary, metrics rows of one)."""
    scen = tmp / "s.toml"
    scen.write_text(f'name = "{algorithm}-small"\n{SMALL}[algorithm]\nname = "{algorithm}"\n')
    for out in ("a", "b"):
        assert main(["run", str(scen), "--out", str(tmp / out), "--quiet"]) == 0
    a, b = (json.loads((tmp / o / "summary.json").read_text()) for o in ("a", "b"))
    return a, b, [json.loads(row) for row in (tmp / "a" / "metrics.jsonl").read_text().splitlines()]


def test_short_run_learns_and_is_deterministic(tmp_path):
    a, b, rows = short_runs(tmp_path, "scaffold")
    assert a["status"] == "completed"
    assert a["final_accuracy"] > 0.5  # 10 classes: chance is 0.1
    assert a["model_sha256"] == b["model_sha256"]
    assert all(r["scaffold_c_norm"] > 0 for r in rows)
