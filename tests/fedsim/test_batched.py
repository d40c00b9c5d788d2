"""runtime.batch_clients: clients trained together give each client its sequential update
(within 1e-5), repeated batched runs the same hash, and what cannot batch is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tomli_w
from fedsim.codecs.pipeline import decode_tensors
from fedsim.codecs.wire import unpack_message

import fedsim
from fedsim.cli import main
from fedsim.experiment import Experiment
from fedsim.runtime.client import ClientRunner
from fedsim.runtime.netbuild import build_network
from fedsim.runtime.server import Server
from fedsim.scenario.load import validate_doc

# unequal data sizes (size skew) and batches that do not divide them: short last batches,
# clients with different step counts (selected [0, 3, 4, 6]: 286, 156, 129, 365 samples)
BASE = {
    "seed": 5,
    "rounds": 2,
    "data": {"dataset": "mnist5k", "partition": "size_skew", "min_size": 10},
    "model": {"name": "cnn"},
    "clients": {"count": 16, "per_round": 4},
    "train": {"local_epochs": 2, "batch_size": 64, "lr": 0.05, "momentum": 0.9,
              "weight_decay": 1e-3},
}  # fmt: skip
CLIENTS = [0, 3, 4, 6]


def scenario(**parts):
    doc = json.loads(json.dumps(BASE))
    for k, v in parts.items():
        doc[k] = {**doc.get(k, {}), **v} if isinstance(v, dict) else v
    return validate_doc(doc)


def updates(runner, results):
    return {r.client_id: decode_tensors(unpack_message(r.update).tensors) for r in results}


def assert_same_updates(runner, tasks, atol):
    """Each client's batched update within `atol` of its sequential one."""
    us = updates(runner, [runner.run(t) for t in tasks])
    ub = updates(runner, runner.run_many(tasks))
    for c in us:
        for k in us[c]:
            np.testing.assert_allclose(ub[c][k], us[c][k], rtol=0, atol=atol, err_msg=f"{c} {k}")


@pytest.mark.parametrize(
    "algo",
    [{"name": "fedavg"}, {"name": "fedprox", "mu": 0.1}, {"name": "fedpaq"}],
)
def test_every_client_gets_its_sequential_update(algo):
    sc = scenario(algorithm=algo, runtime={"batch_clients": 4})
    srv = Server(sc, Experiment(sc), build_network(sc))
    tasks = [d.task for d in srv.dispatch(1, CLIENTS, 0)]
    runner = ClientRunner(sc, srv.experiment)
    sizes = [len(runner.partitions[t.client_id]) for t in tasks]
    assert len(set(sizes)) > 1 and all(n % 64 for n in sizes)  # the masking is exercised
    seq = [runner.run(t) for t in tasks]
    bat = runner.run_many(tasks)
    assert [r.client_id for r in bat] == [t.client_id for t in tasks]
    us, ub = updates(runner, seq), updates(runner, bat)
    for c in us:
        for k in us[c]:
            np.testing.assert_allclose(ub[c][k], us[c][k], rtol=0, atol=1e-5, err_msg=f"{c} {k}")
    for s, b in zip(seq, bat, strict=True):
        ms, mb = unpack_message(s.update).meta, unpack_message(b.update).meta
        assert ms["num_samples"] == mb["num_samples"]
        assert abs(ms["train_loss"] - mb["train_loss"]) < 1e-5


def test_groups_smaller_than_the_round():
    sc = scenario(runtime={"batch_clients": 3}, train={"local_steps": 3})
    srv = Server(sc, Experiment(sc), build_network(sc))
    tasks = [d.task for d in srv.dispatch(1, CLIENTS, 0)]
    runner = ClientRunner(sc, srv.experiment)
    assert_same_updates(runner, tasks, 1e-5)


def test_the_same_mathematics_in_float64():
    """Long local training (2 epochs of batch 16, up to 82 steps) in float64: batched and
    sequential agree to the float32 rounding of the update. In float32 they agree to 1e-5
    only over shorter runs: the grouped kernels round differently, and a rounding-level
    difference that flips one ReLU grows as training goes on."""
    sc = scenario(train={"batch_size": 16, "lr": 0.02}, clients={"count": 8})
    srv = Server(sc, Experiment(sc), build_network(sc))
    tasks = [d.task for d in srv.dispatch(1, [0, 2, 5, 7], 0)]
    runner = ClientRunner(sc, srv.experiment)
    runner.model.double()
    runner._initial = {k: v.double() for k, v in runner._initial.items()}
    runner._x = runner._x.double()
    assert_same_updates(runner, tasks, 1e-7)


def test_repeated_batched_runs_give_one_hash(tmp_path):
    doc = {**BASE, "clients": {"count": 8, "per_round": 5}, "runtime": {"batch_clients": 3}}
    doc["codec"] = {"uplink": "q8"}
    doc["algorithm"] = {"name": "fedpaq"}
    path = tmp_path / "b.toml"
    path.write_text(tomli_w.dumps(doc))
    a, b = fedsim.run(path), fedsim.run(path)
    assert a.summary["model_sha256"] == b.summary["model_sha256"]
    assert a.metrics == [{**m, **{k: a.metrics[i][k] for k in m if k.startswith("wall")}}
                         for i, m in enumerate(b.metrics)]  # fmt: skip
    seq = fedsim.run(path, {"runtime.batch_clients": 1})
    assert abs(seq.metrics[-1]["test_accuracy"] - a.metrics[-1]["test_accuracy"]) < 0.02


@pytest.mark.parametrize(
    ("parts", "why"),
    [
        ({"algorithm": {"name": "scaffold"}}, "client training is its own"),
        ({"algorithm": {"name": "kure"}}, "extra_loss"),
        ({"train": {"optimizer": "adam"}}, "SGD"),
        ({"model": {"name": "resnet18"}}, "BatchNorm"),
        ({"runtime": {"transport": "ipc", "workers": 2}}, "in process"),
        ({"runtime": {"executor": "ray"}}, "in process"),
    ],
)
def test_refusals_name_the_field(tmp_path, capsys, parts, why):
    doc = json.loads(json.dumps(BASE))
    doc["runtime"] = {"batch_clients": 2}
    for k, v in parts.items():
        doc[k] = {**doc.get(k, {}), **v}
    path = tmp_path / "r.toml"
    path.write_text(tomli_w.dumps(doc))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "runtime.batch_clients" in err and why in err, err
