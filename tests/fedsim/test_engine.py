"""The round engine's own mechanisms: downlink error feedback, declared server state,
separate roles, composition refusals, divergence as a result."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedsim.cli import main
from fedsim.experiment import Experiment
from fedsim.runtime import checkpoint as ckpt
from fedsim.runtime.client import ClientRunner
from fedsim.runtime.netbuild import build_network
from fedsim.runtime.server import Server
from fedsim.scenario.load import validate_doc

TINY = {
    "name": "tiny",
    "seed": 3,
    "rounds": 3,
    "data": {"dataset": "mnist5k"},
    "model": {"name": "mlp", "args": {"hidden": [16]}},
    "clients": {"count": 4, "per_round": 2},
    "train": {"local_steps": 2, "batch_size": 16},
}


def scenario(**parts):
    doc = json.loads(json.dumps(TINY))
    for k, v in parts.items():
        doc[k] = {**doc.get(k, {}), **v} if isinstance(v, dict) else v
    return validate_doc(doc)


def server_for(sc):
    return Server(sc, Experiment(sc), build_network(sc))


def test_downlink_feedback_sends_what_top_k_left_out_next_time():
    """ef(topk:0.5) on the downlink: the first task gives client 1 the half of w − w_0 with
    the largest magnitudes; once delivered, the next task (same w) carries the other half,
    so after two downloads the client holds w exactly."""
    sc = scenario(codec={"downlink": "ef(topk:0.5)"})
    srv = server_for(sc)
    rng = np.random.default_rng(0)
    w = {k: (v + rng.normal(size=v.shape)).astype(np.float32) for k, v in srv.global_state.items()}
    srv.global_state = w
    (d1,) = srv.dispatch(1, [1], 0)
    changed = sum(int((d1.received[k] != srv.initial_global[k]).sum()) for k in w)
    total = sum(v.size for v in w.values())
    assert 0.45 * total <= changed <= 0.55 * total
    srv.delivered(d1)
    (d2,) = srv.dispatch(2, [1], 1)
    for k in w:
        np.testing.assert_allclose(d2.received[k], w[k], rtol=0, atol=1e-6)
    # another client has received nothing yet: its reference is still w_0
    (d3,) = srv.dispatch(2, [2], 2)
    assert any(not np.array_equal(d3.received[k], w[k]) for k in w)
    # the client side reconstructs exactly what the server recorded
    runner = ClientRunner(sc, srv.experiment)
    res = runner.run(d2.task)
    assert res.client_id == 1
    srv.close()


def test_downlink_bytes_are_billed_per_client(tmp_path):
    out = tmp_path / "run"
    sc = scenario(codec={"downlink": "ef(topk:0.1)"}, rounds=2)
    from fedsim.runtime.coordinator import Coordinator
    from fedsim.runtime.jsonl import read_jsonl

    Coordinator(sc, out).run()
    rows = [r for r in read_jsonl(out / "traffic.jsonl") if r["kind"] == "model"]
    metrics = read_jsonl(out / "metrics.jsonl")
    for m in metrics:
        sent = [r["wire_bytes"] for r in rows if r["round"] == m["round"] and not r["dropped"]]
        assert m["bytes_down"] == sum(sent)
    assert len(rows) == 4  # 2 clients x 2 rounds, each its own message


def test_declared_server_state_round_trips_through_a_checkpoint():
    sc = scenario(algorithm={"name": "adaquantfl"})
    srv = server_for(sc)
    srv.algo.f0, srv.algo.f_last = 2.3, 0.7
    meta, clients, arrays = srv.checkpoint_parts()
    fresh = server_for(sc)
    assert (fresh.algo.f0, fresh.algo.f_last) == (None, None)
    fresh.restore(srv.global_state, meta, clients, arrays)
    assert (fresh.algo.f0, fresh.algo.f_last) == (2.3, 0.7)
    # dicts of boolean arrays (FedDIP's mask) keep their dtype
    m, a = ckpt.pack_values("algo", {"mask": {"w": np.array([True, False])}, "x": None})
    back = ckpt.unpack_values("algo", m, a)
    assert back["x"] is None and back["mask"]["w"].dtype == bool
    assert back["mask"]["w"].tolist() == [True, False]


def test_server_and_client_roles_are_separate_instances():
    sc = scenario()
    srv = server_for(sc)
    runner = ClientRunner(sc, srv.experiment)
    assert runner.algorithm is not srv.algo and runner.model is not srv.model
    assert srv.algo.server is not None and runner.algorithm.server is None


@pytest.mark.parametrize(
    "sets, field",
    [
        (['server.mode="async"', 'algorithm.name="feddip"'], "server.mode"),
        (['algorithm.name="feddq"', 'codec.uplink="q4"'], "codec.uplink"),
        (['algorithm.name="feddip"', 'codec.downlink="ef(topk:0.1)"'], "codec.downlink"),
        (['algorithm.name="oqfl"', 'algorithm.wire="int"', 'server.mode="async"'], "server.mode"),
    ],
)
def test_validate_refuses_combinations_in_one_line(tmp_path, capsys, sets, field):
    f = tmp_path / "s.toml"
    f.write_text('name = "s"\nrounds = 1\n[model]\nname = "mlp"\n')
    args = ["validate", str(f)]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and field in err[0], err


def test_divergence_is_a_result_with_exit_3(tmp_path, capsys):
    f = tmp_path / "s.toml"
    f.write_text(
        'name = "s"\nrounds = 3\n[model]\nname = "mlp"\nargs = { hidden = [16] }\n'
        "[clients]\ncount = 4\nper_round = 2\n[train]\nlocal_steps = 3\nlr = 1e6\n"
    )
    out = tmp_path / "o"
    assert main(["run", str(f), "--out", str(out), "--quiet"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "diverged" in err[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged"
    for name in ("metrics.jsonl", "traffic.jsonl", "summary.json"):
        text = (out / name).read_text()
        assert "NaN" not in text and "Infinity" not in text
