"""FedNova: the normalizer a_i, the aggregate by hand with unequal steps, FedAvg when every
a_i is equal, the client's normalized update, the refusals, and short runs through the CLI."""

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_scaffold import linear_problem, short_runs

from fedsim.algorithms import ALGORITHMS
from fedsim.algorithms.base import ClientContext, ClientResult
from fedsim.algorithms.fedavg import FedAvg
from fedsim.algorithms.fednova import FedNova, effective_steps, normalizer
from fedsim.errors import ScenarioError


def scenario(*, momentum=0.0, slr=1.0, optimizer="sgd", epochs=2, batch=8, lr=0.05):
    return SimpleNamespace(
        train=SimpleNamespace(
            lr=lr,
            local_steps=None,
            local_epochs=epochs,
            batch_size=batch,
            optimizer=optimizer,
            momentum=momentum,
            weight_decay=0.0,
        ),
        server=SimpleNamespace(server_lr=slr),
        codec=SimpleNamespace(uplink="fp32", downlink="fp32"),
    )


def test_registered_and_refuses_async():
    assert ALGORITHMS["fednova"] is FedNova
    assert "synchronous" in FedNova(scenario()).async_refusal()


def test_normalizer():
    assert normalizer(7) == 7.0
    # momentum: a = Σ_t c_t with the counter c_t = ρ c_{t−1} + 1 (1, 1.5, 1.75 for ρ = 0.5)
    assert normalizer(3, 0.5) == pytest.approx(4.25)
    for tau, rho in [(1, 0.9), (10, 0.5), (37, 0.9)]:
        c, total = 0.0, 0.0
        for _ in range(tau):
            c = rho * c + 1.0
            total += c
        assert normalizer(tau, rho) == pytest.approx(total, rel=1e-12)


def result(cid, n, d, a, steps=None):
    return ClientResult(
        client_id=cid,
        tensors={"w": np.asarray(d, np.float32)},
        num_samples=n,
        train_loss=0.0,
        metrics={"fednova_a": float(a), "fednova_steps": float(steps or a)},
    )


@pytest.mark.parametrize("slr", [1.0, 0.5])
def test_aggregate_by_hand_with_unequal_steps(slr):
    # client 0: n = 10, τ = 2, Δ = (2, 0) → Δ/a = (1, 0); client 1: n = 30, τ = 4, Δ = (0, 4)
    # → (0, 1). p = (1/4, 3/4), τ_eff = 2/4 + 3 = 3.5, x ← x + 3.5 · (1/4, 3/4)
    results = [result(1, 30, [0.0, 1.0], 4), result(0, 10, [1.0, 0.0], 2)]
    assert effective_steps(results) == pytest.approx(3.5)
    x = {"w": np.array([1.0, -1.0], np.float32)}
    new = FedNova(scenario(slr=slr)).aggregate(1, x, results)
    np.testing.assert_allclose(new["w"], [1.0 + slr * 0.875, -1.0 + slr * 2.625], atol=1e-6)
    # FedAvg on the raw updates would move to x + (0.5, 3.0): the client with more steps wins
    m = FedNova(scenario()).after_aggregate(1, new, results)
    assert m == {"fednova_tau_eff": 3.5, "fednova_steps_min": 2, "fednova_steps_max": 4}


def test_equals_fedavg_when_every_a_is_equal():
    rng = np.random.default_rng(0)
    raw = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(3)]
    sizes, a = [12, 40, 7], 6.25
    x = {"w": rng.normal(size=(3, 4)).astype(np.float32)}
    nova = FedNova(scenario()).aggregate(
        1, x, [result(i, n, d / a, a) for i, (n, d) in enumerate(zip(sizes, raw, strict=True))]
    )
    avg = FedAvg(scenario()).aggregate(
        1, x, [result(i, n, d, a) for i, (n, d) in enumerate(zip(sizes, raw, strict=True))]
    )
    np.testing.assert_allclose(nova["w"], avg["w"], rtol=1e-6, atol=1e-6)


def context(model, x, y) -> ClientContext:
    return ClientContext(
        round=1,
        client_id=0,
        model=model,
        x=x,
        y=y,
        config={"lr": 0.05},
        global_state={k: v.detach().numpy().copy() for k, v in model.state_dict().items()},
        seed=0,
        generator=torch.Generator().manual_seed(0),
        state={},
        scenario=None,
    )


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_client_sends_update_over_a(momentum):
    model, x, y, _ = linear_problem(0)
    sc = scenario(momentum=momentum)  # τ = 2 epochs · ⌈30/8⌉ = 8 steps
    plain = FedAvg(sc).local_train(context(copy.deepcopy(model), x, y))
    nova = FedNova(sc).local_train(context(copy.deepcopy(model), x, y))
    a = normalizer(8, momentum)
    assert nova.metrics == {"fednova_steps": 8.0, "fednova_a": a}
    for k in plain.tensors:
        np.testing.assert_allclose(nova.tensors[k] * a, plain.tensors[k], rtol=1e-5, atol=1e-7)


def test_adam_is_refused_before_training():
    with pytest.raises(ScenarioError) as e:
        FedNova(scenario(optimizer="adam")).init_global(torch.nn.Linear(2, 2))
    assert e.value.field == "train.optimizer"


def test_short_run_learns_and_is_deterministic(tmp_path):
    a, b, rows = short_runs(tmp_path, "fednova")
    assert a["status"] == "completed"
    assert a["final_accuracy"] > 0.5  # 10 classes: chance is 0.1
    assert a["model_sha256"] == b["model_sha256"]
    assert any(r["fednova_steps_min"] < r["fednova_steps_max"] for r in rows)  # unequal τ_i
