"""Neural-ODE FL (fedsim/algorithms/odefl.py): shared tensors sent once, FLOPs follow C,
deterministic per-client C, the model restored after local training, end to end."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fedsim.codecs.pipeline import decode_tensors
from fedsim.codecs.wire import pack_message, payload_bytes, unpack_message
from torch import nn

from fedsim.algorithms import build_algorithm
from fedsim.algorithms.base import (
    ClientContext,
    ClientResult,
    ClientUpdate,
    Uplink,
    state_from_model,
)
from fedsim.algorithms.odefl import ODEFLOptions, alias_map, client_iterations, unrolled_counts
from fedsim.cli import main
from fedsim.experiment import Experiment
from fedsim.models import ODENet, ResNet
from fedsim.runtime.flops import FlopModel
from fedsim.scenario import validate_doc

SHAPE = (1, 8, 8)


def scenario(**algorithm):
    return validate_doc(
        {
            "data": {"dataset": "mnist5k"},
            "model": {"name": "odenet", "args": {"blocks": 2, "width": 4, "stages": 2}},
            "train": {"batch_size": 4, "local_steps": 2},
            "algorithm": {"name": "odefl", **algorithm},
        }
    )


def context(model, config, global_state=None):
    return ClientContext(
        round=1,
        client_id=0,
        model=model,
        x=torch.randn(8, *SHAPE),
        y=torch.randint(0, 10, (8,)),
        config=config,
        global_state=global_state if global_state is not None else state_from_model(model),
        seed=0,
        generator=torch.Generator().manual_seed(0),
        state={},
        scenario=None,
    )


def tensor_bytes(records) -> int:
    """Bytes of the tensor data in an encoded message (every frame but the header)."""
    frames = pack_message("update", {}, records)
    return payload_bytes(frames[1:])


def encode(algo, model, config=None):
    sd = state_from_model(model)
    update = ClientUpdate(tensors={k: v for k, v in sd.items()}, num_samples=1, train_loss=0.0)
    ctx = context(model, config or {})
    enc = algo.encode_update(ctx, update, Uplink("fp32", np.random.default_rng(0), {}))
    records, metrics = enc.records, enc.metrics
    return records, metrics


class TiedNet(nn.Module):
    """A ResNet that repeats one block object n times: n state names, one set of weights."""

    def __init__(self, n: int):
        super().__init__()
        block = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.GroupNorm(2, 2))
        self.stem = nn.Conv2d(1, 2, 1)
        self.blocks = nn.Sequential(*([block] * n))
        self.head = nn.Linear(2, 10)


# --- each shared tensor once ----------------------------------------------------------------


@pytest.mark.parametrize("blocks", [1, 2, 4])
def test_odenet_update_bytes_equal_its_distinct_tensors(blocks):
    algo = build_algorithm(scenario())
    model = ODENet(SHAPE, 10, blocks=blocks, width=4, stages=2)
    records, metrics = encode(algo, model, {"iterations": blocks})
    distinct = sum(p.numel() for p in model.parameters()) * 4  # GroupNorm: no buffers
    assert tensor_bytes(records) == distinct == metrics["ode_distinct_bytes"]
    shared = sum(dict(model.named_parameters())[n].numel() for n in model.shared_parameter_names())
    assert metrics["ode_unrolled_bytes"] == distinct + (blocks - 1) * shared * 4
    # the unrolled count is exactly the ResNet counterpart's size
    resnet = ResNet(SHAPE, 10, blocks=blocks, width=4, stages=2)
    assert metrics["ode_unrolled_bytes"] == sum(p.numel() for p in resnet.parameters()) * 4


def test_tied_weights_travel_once_both_ways_and_aggregate_back():
    n = 3
    model = TiedNet(n)
    aliases = alias_map(model)
    assert len(aliases) == 4 * (n - 1)  # conv and norm weight + bias, per extra copy
    assert set(aliases.values()) <= {
        f"blocks.0.{s}" for s in ("0.weight", "0.bias", "1.weight", "1.bias")
    }
    algo = build_algorithm(scenario())
    full = algo.init_global(model)
    assert set(full) == set(model.state_dict())  # the server keeps every name

    plan = algo.configure_round(1, full)
    assert not set(plan.payload) & set(aliases)

    records, metrics = encode(algo, model)
    distinct = {id(p) for p in model.parameters()}
    assert len(distinct) == len(full) - len(aliases)
    assert tensor_bytes(records) == sum(p.numel() for p in model.parameters()) * 4
    assert metrics["ode_unrolled_bytes"] == sum(v.nbytes for v in full.values())

    sent = decode_tensors(unpack_message(pack_message("update", {}, records)).tensors)
    result = ClientResult(client_id=0, tensors=sent, num_samples=1, train_loss=0.0, metrics={})
    new = algo.aggregate(1, {k: np.zeros_like(v) for k, v in full.items()}, [result])
    assert set(new) == set(full)
    for alias, canonical in aliases.items():
        np.testing.assert_array_equal(new[alias], new[canonical])
        np.testing.assert_array_equal(new[alias], full[canonical])


def test_unrolled_counts_follow_the_iterations():
    model = ODENet(SHAPE, 10, blocks=2, width=4, stages=2)
    model.set_iterations(5)
    counts = unrolled_counts(model)
    assert {counts[n] for n in model.shared_parameter_names()} == {5}
    assert counts["stem.weight"] == 1


# --- FLOPs follow C -------------------------------------------------------------------------


def test_train_flops_per_sample_scale_with_iterations():
    sc = scenario()
    algo = build_algorithm(sc)
    algo.bind(Experiment(sc).server_context(algo))
    torch.manual_seed(0)
    model = ODENet((1, 28, 28), 10, blocks=2, width=4, stages=2)
    algo.init_global(model)
    base = FlopModel(model, (1, 28, 28), sc.train.batch_size)
    flops = {c: algo.train_flops_per_sample(base, {"iterations": c}) for c in (1, 2, 3, 4, 8)}
    assert flops[2] == pytest.approx(base.train_flops(1))  # the model's own C: same count
    step = flops[2] - flops[1]
    assert step > 0
    for c, f in flops.items():  # affine in C: stem/downsamplers/head + C x the ODE blocks
        assert f == pytest.approx(flops[1] + (c - 1) * step)
    assert model.iterations == 2  # counting never leaves the model at another C
    assert algo.train_flops_per_sample(base, {}) == base.train_flops(1)


# --- which C each client runs ---------------------------------------------------------------


def test_client_iterations_are_deterministic():
    opts = ODEFLOptions(
        iterations_by_profile={"phone-4g": 1, "laptop-wifi": 4}, iterations_mix=[1, 2, 4]
    )
    phone, laptop, edge = (SimpleNamespace(name=n) for n in ("phone-4g", "laptop-wifi", "edge"))
    assert client_iterations(opts, 3, 7, phone) == 1
    assert client_iterations(opts, 3, 7, laptop) == 4
    # no profile match, or no device at all: the client-id mix
    assert [client_iterations(opts, 3, c, None) for c in range(6)] == [1, 2, 4, 1, 2, 4]
    assert client_iterations(opts, 3, 4, edge) == 2
    assert client_iterations(ODEFLOptions(), 3, 4, None) == 3
    assert client_iterations(ODEFLOptions(iterations=2), 3, 4, laptop) == 2


def test_client_config_from_the_algorithm_is_repeatable():
    sc = scenario(iterations_mix=[1, 4])

    def configs():
        algo = build_algorithm(sc)
        algo.init_global(ODENet(SHAPE, 10, blocks=2, width=4, stages=2))
        return [algo.client_config(r, c, None) for r in (1, 2) for c in range(5)]

    first = configs()
    assert first == configs()
    assert [c["iterations"] for c in first[:5]] == [1, 4, 1, 4, 1]
    # a non-ODE model gets no iteration count
    algo = build_algorithm(sc)
    algo.init_global(ResNet(SHAPE, 10, blocks=2, width=4, stages=2))
    assert algo.client_config(1, 0, None) == {}


def test_bad_options_are_rejected():
    with pytest.raises(Exception, match="iteration counts must be >= 1"):
        ODEFLOptions(iterations_mix=[1, 0])
    with pytest.raises(Exception, match="per-iteration BatchNorms"):
        algo = build_algorithm(scenario(iterations_mix=[1, 4]))
        algo.init_global(ODENet(SHAPE, 10, blocks=2, width=4, stages=2, norm="batch"))


# --- client side ----------------------------------------------------------------------------


def test_local_train_runs_at_the_client_c_and_restores_the_model():
    sc = scenario()
    algo = build_algorithm(sc)
    torch.manual_seed(0)
    model = ODENet(SHAPE, 10, blocks=2, width=4, stages=2)
    seen = []
    model.body[0].f.register_forward_hook(lambda *_: seen.append(model.iterations))
    ctx = context(model, {"iterations": 3, "lr": 0.05})
    ctx.scenario = sc
    algo.scenario = sc
    update = algo.local_train(ctx)
    assert set(seen) == {3} and len(seen) == 2 * 3  # two steps, three iterations each
    assert model.iterations == 2
    assert update.metrics["iterations"] == 3.0


def test_evaluate_at_several_iterations():
    sc = scenario()
    algo = build_algorithm(sc)
    algo.bind(Experiment(sc).server_context(algo))
    torch.manual_seed(0)
    model = ODENet((1, 28, 28), 10, blocks=2, width=4, stages=2)
    state = algo.init_global(model)
    out = algo.evaluate_at(state, [1, 2])
    assert set(out) == {"acc_c1", "loss_c1", "acc_c2", "loss_c2"}
    assert all(0 <= out[f"acc_c{c}"] <= 1 for c in (1, 2))
    assert algo._model.iterations == 2


# --- end to end -----------------------------------------------------------------------------

RUN = """
name = "odefl-small"
seed = 1
rounds = 2
[data]
dataset = "mnist5k"
[model]
name = "odenet"
args = { blocks = 2, width = 4, stages = 2 }
[clients]
count = 4
per_round = 4
[train]
local_steps = 2
batch_size = 10
[algorithm]
name = "odefl"
iterations_mix = [1, 4]
eval_iterations = [1, 2, 4]
[eval]
every = 2
"""


def test_mixed_iterations_end_to_end(tmp_path):
    scen = tmp_path / "s.toml"
    scen.write_text(RUN)
    out = tmp_path / "run"
    assert main(["run", str(scen), "--out", str(out), "--quiet"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["iterations_by_client"] == {"0": 1, "1": 4, "2": 1, "3": 4}
    assert {"acc_c1", "acc_c2", "acc_c4"} <= set(rows[-1]) and "acc_c1" not in rows[0]
    traffic = [json.loads(line) for line in (out / "traffic.jsonl").read_text().splitlines()]
    ups = [t for t in traffic if t["kind"] == "update" and t["round"] == 1]
    # shapes do not depend on C: every client's update costs the same bytes
    assert len({t["payload_bytes"] for t in ups}) == 1
    compute = {
        t["client"]: t["t_compute_end"]
        - next(m for m in traffic if m["kind"] == "model" and m["client"] == t["client"])[
            "t_deliver"
        ]
        for t in ups
    }
    assert compute[1] > 2 * compute[0]  # C = 4 trains much longer than C = 1
