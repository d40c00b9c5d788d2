"""AdaQuantFL's level rule on the real server path: F from the global model's training loss
(F_0 = F(w_0) before round 1), s_k = ceil(s_0·sqrt(F_0/F_k)) in the task every executor
decodes, the clients' mean loss as an option, and resume with either source."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from fedsim.codecs.wire import unpack_message

from fedsim.algorithms.base import load_state
from fedsim.errors import ScenarioError
from fedsim.eval.evaluate import evaluate
from fedsim.runtime import coordinator as coord
from fedsim.runtime.client import ClientRunner
from fedsim.runtime.jsonl import read_jsonl
from fedsim.runtime.server import Server
from fedsim.scenario.checks import check_scenario
from fedsim.scenario.load import validate_doc

from test_engine import TINY, server_for  # isort: skip


def scenario(name: str = "adaquantfl", **algorithm) -> object:
    """test_engine's tiny MLP scenario, trained enough per round that the loss moves."""
    doc = json.loads(json.dumps(TINY))
    doc["train"] = {"local_steps": 20, "batch_size": 32, "lr": 0.1}
    doc["runtime"] = {"checkpoint_every": 1}
    doc["algorithm"] = {"name": name, **algorithm}
    return validate_doc(doc)


def union_loss(srv: Server, state: dict) -> float:
    """F(w) computed here without the experiment's helper: every partition's samples once."""
    exp = srv.experiment
    idx = np.unique(np.concatenate(exp.partitions))
    model = exp.new_model(srv.algo)
    load_state(model, state)
    x = torch.from_numpy(np.ascontiguousarray(exp.dataset.x_train[idx]))
    y = torch.from_numpy(np.ascontiguousarray(exp.dataset.y_train[idx]))
    return evaluate(model, x, y, 1000)[1]


def one_round(srv: Server, runner: ClientRunner, rnd: int, clients: list[int]) -> str:
    """Dispatch, train and aggregate one round; the uplink spec the tasks carried."""
    ds = srv.dispatch(rnd, clients, 10 * rnd)
    specs = {unpack_message(d.task.payload).meta["uplink"] for d in ds}
    assert len(specs) == 1
    results = [srv.accept(d.client, runner.run(d.task)) for d in ds]
    srv.aggregate(rnd, results)
    return specs.pop()


def test_f0_is_the_fresh_models_training_loss_near_ln10():
    srv = server_for(scenario())
    assert srv.algo.f0 is None
    plan = srv.plan(1)
    f0 = srv.algo.f0
    assert abs(f0 - math.log(10)) < 0.1  # 10 classes, near-uniform predictions
    assert f0 == pytest.approx(union_loss(srv, srv.global_state), rel=1e-6)
    assert plan.uplink == "qsgd:s=2" and plan.config["level"] == 2  # s_0 in round 1
    srv.close()


def test_feddq_loss_mode_can_read_the_global_loss_too():
    srv = server_for(scenario("feddq", mode="loss", loss_source="global", s0=16))
    runner = ClientRunner(srv.scenario, srv.experiment)
    assert one_round(srv, runner, 1, [0, 1]) == "fp32"  # bits per tensor from the config
    assert srv.algo.f0 == pytest.approx(union_loss(srv, srv.initial_global), rel=1e-6)
    assert srv.algo.f_last == pytest.approx(union_loss(srv, srv.global_state), rel=1e-6)
    bits = srv.plan(2).config["bits"]
    s = max(1, math.ceil(16 * srv.algo.f_last / srv.algo.f0))  # descending with the loss
    assert bits == max(1, math.ceil(math.log2(s + 1))) and bits < 5
    srv.close()


def test_levels_follow_the_rule_and_travel_in_the_task():
    srv = server_for(scenario(s0=4))
    runner = ClientRunner(srv.scenario, srv.experiment)
    levels = []
    for rnd, clients in ((1, [0, 1]), (2, [2, 3]), (3, [0, 3])):
        spec = one_round(srv, runner, rnd, clients)
        levels.append(int(spec.split("s=")[1]))
        # F_k: the new global model's loss over the clients' data, computed by the server
        assert srv.algo.f_last == pytest.approx(union_loss(srv, srv.global_state), rel=1e-6)
        expected = math.ceil(4 * math.sqrt(srv.algo.f0 / srv.algo.f_last))
        assert srv.plan(rnd + 1).uplink == f"qsgd:s={expected}"
    assert levels[0] == 4 and levels[-1] > 4  # ascending as the loss falls
    assert levels == sorted(levels)
    srv.close()


def test_clients_source_uses_the_reported_mean_loss():
    srv = server_for(scenario(loss_source="clients"))
    runner = ClientRunner(srv.scenario, srv.experiment)
    assert one_round(srv, runner, 1, [0, 1]) == "qsgd:s=2"
    assert srv.algo.f0 is not None and srv.algo.f0 == srv.algo.f_last
    ds = srv.dispatch(2, [2, 3], 20)
    results = [srv.accept(d.client, runner.run(d.task)) for d in ds]
    srv.aggregate(2, results)
    mean = float(np.mean([r.train_loss for r in results]))
    assert srv.algo.f_last == pytest.approx(mean)
    assert srv.algo.f0 != srv.algo.f_last
    srv.close()


def test_unknown_loss_source_is_refused():
    with pytest.raises(ScenarioError) as e:
        check_scenario(scenario(loss_source="test"))
    assert "loss_source" in f"{e.value.field} {e.value.message}"


@pytest.mark.parametrize("source", ["global", "clients"])
def test_resume_gives_the_same_model(tmp_path, crash_and_resume, source):
    sc = scenario(loss_source=source)
    coord.Coordinator(sc, tmp_path / "fresh").run()
    crash_and_resume(sc, tmp_path / "resumed")
    fresh, resumed = (
        json.loads((tmp_path / d / "summary.json").read_text()) for d in ("fresh", "resumed")
    )
    assert fresh["model_sha256"] == resumed["model_sha256"]
    rows = [read_jsonl(tmp_path / d / "metrics.jsonl") for d in ("fresh", "resumed")]
    strip = [[r["loss_F"] for r in rs] for rs in rows]
    assert strip[0] == strip[1] and len(strip[0]) == 3
