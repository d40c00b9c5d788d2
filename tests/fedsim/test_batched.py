"""runtime.batch_clients: clients trained together give each client its sequential update
(within 1e-5), repeated batched runs the same hash — in process, in ZeroMQ worker processes
and on Ray, with the same groups everywhere, a lost worker's group run again whole — and
what cannot batch is refused."""

from __future__ import annotations

import asyncio
import json
import os

import numpy as np
import pytest
import tomli_w
from fedsim.codecs.pipeline import decode_tensors
from fedsim.codecs.wire import unpack_message

import fedsim
from fedsim.cli import main
from fedsim.experiment import Experiment
from fedsim.runtime import protocol as P
from fedsim.runtime.client import ClientRunner
from fedsim.runtime.executors.base import WorkerPool
from fedsim.runtime.netbuild import build_network
from fedsim.runtime.server import Server
from fedsim.scenario.load import validate_doc

# unequal data sizes (size skew) and batches that do not divide them: short last batches,
# clients with different step counts (selected [0, 3, 4, 6]: 286, 156, 129, 365 samples)
BASE = {
    "seed": 5,
    "rounds": 2,
    "data": {"dataset": "mnist5k", "partition": "size_skew", "min_size": 10},
    "model": {"name": "cnn", "args": {"channels": [8, 16], "hidden": 64}},  # small: fast tests
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


def assert_same_updates(runner, tasks, atol, kernels):
    """Each client's batched update within `atol` of its sequential one."""
    us = updates(runner, [runner.run(t) for t in tasks])
    ub = updates(runner, runner.run_many(tasks, kernels))
    for c in us:
        for k in us[c]:
            np.testing.assert_allclose(ub[c][k], us[c][k], rtol=0, atol=atol, err_msg=f"{c} {k}")


# vmap: within 1e-5 (stacked kernels round differently); per_client: bit for bit
TOLERANCE = {"vmap": 1e-5, "per_client": 0.0}


@pytest.mark.parametrize("kernels", sorted(TOLERANCE))
@pytest.mark.parametrize(
    "algo",
    [{"name": "fedavg"}, {"name": "fedprox", "mu": 0.1}, {"name": "fedpaq"}],
)
def test_every_client_gets_its_sequential_update(algo, kernels):
    sc = scenario(algorithm=algo, runtime={"batch_clients": 4})
    srv = Server(sc, Experiment(sc), build_network(sc))
    tasks = [d.task for d in srv.dispatch(1, CLIENTS, 0)]
    runner = ClientRunner(sc, srv.experiment)
    sizes = [len(runner.partitions[t.client_id]) for t in tasks]
    assert len(set(sizes)) > 1 and all(n % 64 for n in sizes)  # the masking is exercised
    seq = [runner.run(t) for t in tasks]
    bat = runner.run_many(tasks, kernels)
    assert [r.client_id for r in bat] == [t.client_id for t in tasks]
    us, ub = updates(runner, seq), updates(runner, bat)
    atol = TOLERANCE[kernels]
    for c in us:
        for k in us[c]:
            np.testing.assert_allclose(ub[c][k], us[c][k], rtol=0, atol=atol, err_msg=f"{c} {k}")
    for s, b in zip(seq, bat, strict=True):
        ms, mb = unpack_message(s.update).meta, unpack_message(b.update).meta
        assert ms["num_samples"] == mb["num_samples"]
        assert abs(ms["train_loss"] - mb["train_loss"]) <= max(atol, 0.0)


@pytest.mark.parametrize("kernels", sorted(TOLERANCE))
def test_groups_smaller_than_the_round(kernels):
    sc = scenario(runtime={"batch_clients": 3}, train={"local_steps": 3})
    srv = Server(sc, Experiment(sc), build_network(sc))
    tasks = [d.task for d in srv.dispatch(1, CLIENTS, 0)]
    runner = ClientRunner(sc, srv.experiment)
    assert_same_updates(runner, tasks, TOLERANCE[kernels], kernels)


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
    assert_same_updates(runner, tasks, 1e-7, "vmap")


def test_repeated_batched_runs_give_one_hash(tmp_path):
    doc = {**BASE, "clients": {"count": 8, "per_round": 5}, "codec": {"uplink": "q8"}}
    doc["train"] = {**doc["train"], "local_epochs": 1}
    doc["runtime"] = {"batch_clients": 3, "batch_kernels": "vmap"}
    doc["algorithm"] = {"name": "fedpaq"}
    path = tmp_path / "b.toml"
    path.write_text(tomli_w.dumps(doc))
    a, b = fedsim.run(path), fedsim.run(path)
    assert a.summary["model_sha256"] == b.summary["model_sha256"]
    assert a.metrics == [{**m, **{k: a.metrics[i][k] for k in m if k.startswith("wall")}}
                         for i, m in enumerate(b.metrics)]  # fmt: skip
    seq = fedsim.run(path, {"runtime.batch_clients": 1})
    assert abs(seq.metrics[-1]["test_accuracy"] - a.metrics[-1]["test_accuracy"]) < 0.02
    # per-client kernels (the CPU's default): the sequential run, bit for bit
    lockstep = fedsim.run(path, {"runtime.batch_kernels": "auto"})
    assert lockstep.summary["model_sha256"] == seq.summary["model_sha256"]


@pytest.mark.parametrize(
    ("parts", "why"),
    [
        ({"algorithm": {"name": "scaffold"}}, "client training is its own"),
        ({"algorithm": {"name": "kure"}}, "extra_loss"),
        ({"train": {"optimizer": "adam"}}, "SGD"),
        ({"model": {"name": "resnet18", "args": {}}}, "BatchNorm"),
        ({"server": {"mode": "async"}}, "FedBuff"),
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


def test_workers_and_ray_are_not_refused(tmp_path, capsys):
    for rt in ({"transport": "ipc", "workers": 2}, {"executor": "ray", "workers": 2}):
        doc = {**json.loads(json.dumps(BASE)), "runtime": {"batch_clients": 2, **rt}}
        path = tmp_path / "ok.toml"
        path.write_text(tomli_w.dumps(doc))
        assert main(["validate", str(path)]) == 0, capsys.readouterr().err


# ---- the same groups whoever runs them ----------------------------------------------------


def fake_task(tid: int) -> P.Task:
    return P.Task(tid, 1, tid, [b"payload"], [], {})


class Transport:
    def __init__(self):
        self.sent: list[tuple[str, tuple[int, ...]]] = []
        self.pool = WorkerPool(self.send, send_group=self.send_group)

    def send(self, worker, task):
        self.sent.append((worker.key, (task.task_id,)))

    def send_group(self, worker, tasks):
        self.sent.append((worker.key, tuple(t.task_id for t in tasks)))


def ok(pool: WorkerPool, key: str, tid: int) -> None:
    """An answer the pool accepts (validation replaced: the pool's bookkeeping is tested)."""
    pool.answer(key, [b"fine"], fake_task(tid))


def test_a_group_goes_whole_to_one_worker_and_comes_back_whole():
    tr = Transport()

    async def scenario_():
        pool = tr.pool
        pool.validate = lambda task, frames: P.TaskResult(
            task.task_id, task.round, task.client_id, [], [], {}
        )
        for k in ("a", "b"):
            pool.join(k, k)
            pool.ready(k)
        g1 = pool.submit_group([fake_task(0), fake_task(1), fake_task(2)])
        g2 = pool.submit_group([fake_task(3), fake_task(4)])
        assert tr.sent == [("a", (0, 1, 2)), ("b", (3, 4))]
        ok(pool, "a", 0)
        assert g1[0].done() and not g1[1].done()
        pool.lose("a", "silent")  # mid-group: the whole group waits for the next free worker
        assert [t.task_id for t in pool.pending[0]] == [0, 1, 2]
        ok(pool, "b", 3)
        assert len(tr.sent) == 2  # b still has task 4 of its group: no new group yet
        ok(pool, "b", 4)
        assert tr.sent[-1] == ("b", (0, 1, 2)) and all(f.done() for f in g2)
        first = g1[0].result()
        for tid in (0, 1, 2):  # task 0's second answer is dropped, the first one stands
            ok(pool, "b", tid)
        assert g1[0].result() is first and all(f.done() for f in g1)
        assert not pool.workers["b"].inflight and not pool.workers["b"].units
        single = pool.submit(fake_task(5))  # a single task is a unit of one
        assert tr.sent[-1] == ("b", (5,)) and not single.done()

    asyncio.run(scenario_())


def test_run_submits_consecutive_groups_of_batch_clients():
    from fedsim.runtime.executors.base import Executor

    class Recorder(Executor):
        group_size = 3

        def __init__(self):
            self.units = []

        async def start(self):
            pass

        async def close(self):
            pass

        def submit(self, task):
            self.units.append((task.task_id,))
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(P.TaskResult(task.task_id, 1, task.client_id, [], [], {}))
            return fut

        def submit_group(self, tasks):
            futs = [self.submit(t) for t in tasks]
            self.units[-len(tasks) :] = [tuple(t.task_id for t in tasks)]
            return futs

    ex = Recorder()
    out = asyncio.run(ex.run([fake_task(i) for i in range(7)]))
    assert sorted(out) == list(range(7))
    assert ex.units == [(0, 1, 2), (3, 4, 5), (6,)]


def executor_results(sc, tasks):
    """The tasks' results from the executor the scenario names (started and closed here)."""
    from fedsim.runtime.executors import make_executor
    from fedsim.scenario.load import dump_scenario

    async def go():
        ex = make_executor(sc, None, scenario_toml=dump_scenario(sc), on_event=lambda k, **f: None)
        await ex.start()
        try:
            return await ex.run(tasks)
        finally:
            await ex.close()

    res = asyncio.run(go())
    return [res[t.task_id] for t in tasks]


def check_executor_matches_in_process(**runtime):
    """Batched with `runtime` (2 workers, two groups of 2): each client's update bit for bit
    the in-process batched one (same groups), within 1e-5 of its sequential one."""
    sc = scenario(
        runtime={
            "batch_clients": 2,
            "batch_kernels": "vmap",
            "heartbeat_interval": 0.2,
            "worker_timeout": 20.0,
            **runtime,
        },  # fmt: skip
        train={"local_steps": 4},
    )
    srv = Server(sc, Experiment(sc), build_network(sc))
    tasks = [d.task for d in srv.dispatch(1, CLIENTS, 0)]
    runner = ClientRunner(sc, srv.experiment)
    remote = executor_results(sc, tasks)
    assert all(r.meta["worker_pid"] not in (None, os.getpid()) for r in remote)
    ur, ub = updates(runner, remote), updates(runner, runner.run_many(tasks))
    us = updates(runner, [runner.run(t) for t in tasks])
    for c in us:
        for k in us[c]:
            np.testing.assert_array_equal(ur[c][k], ub[c][k], err_msg=f"{c} {k}")
            np.testing.assert_allclose(ur[c][k], us[c][k], rtol=0, atol=1e-5, err_msg=f"{c} {k}")
    for r, t in zip(remote, tasks, strict=True):
        assert unpack_message(r.update).meta["num_samples"] == len(runner.partitions[t.client_id])


@pytest.mark.multiprocess
def test_ipc_workers_give_each_client_its_update():
    check_executor_matches_in_process(transport="ipc", workers=2)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_ray_actors_give_each_client_its_update():
    pytest.importorskip("ray")
    check_executor_matches_in_process(executor="ray", workers=2)


@pytest.mark.multiprocess
def test_ipc_workers_give_the_in_process_hash_and_survive_a_lost_worker(tmp_path):
    """Whole runs: 2 ipc workers = in process, repeated; a worker killed before its first
    answer (mid-group) costs a re-run of its whole group and changes nothing."""
    doc = {**json.loads(json.dumps(BASE)), "clients": {"count": 8, "per_round": 5}}
    doc["train"] = {**doc["train"], "local_steps": 3}
    doc["runtime"] = {"batch_clients": 2, "batch_kernels": "vmap", "heartbeat_interval": 0.2,
                      "worker_timeout": 5.0}  # fmt: skip
    path = tmp_path / "b.toml"
    path.write_text(tomli_w.dumps(doc))
    ref = fedsim.run(path)
    ipc = ["runtime.transport=ipc", "runtime.workers=2"]
    for env in ({}, {"FEDSIM_FAULT": "kill:1:1"}):
        os.environ.update(env)
        try:
            run = fedsim.run(path, ipc)
        finally:
            for k in env:
                del os.environ[k]
        assert run.summary["model_sha256"] == ref.summary["model_sha256"], env
        kinds = [e["event"] for e in run.events]
        if env:  # worker 1 died on its first answer: its whole group was run again
            assert "worker_lost" in kinds and kinds.count("redispatch") in (1, 2), kinds
        strip = [{k: v for k, v in m.items() if not k.startswith("wall")} for m in run.metrics]
        assert strip == [{k: v for k, v in m.items() if not k.startswith("wall")}
                         for m in ref.metrics]  # fmt: skip
