"""OQFL's `int` wire: the server's fp32 latent keeps updates smaller than half a grid step,
stochastic uplink rounding is unbiased, the downlink carries codes, and a resumed run
continues the latent (declared server state) to the same model hash."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fedsim.codecs.pipeline import decode_tensors
from torch import nn

from fedsim.algorithms.base import ClientResult
from fedsim.algorithms.oqfl import OQFL, OQFLOptions, int_record, project

W = "1.weight"  # the middle layer of the model below (4 bits; first and last at 8)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


def _server(server_latent: bool) -> tuple[OQFL, dict]:
    opts = OQFLOptions(bits=4, wire="int", act_bits=0, server_latent=server_latent)
    algo = OQFL(SimpleNamespace(), opts)
    return algo, algo.init_global(_model())


def _round(algo: OQFL, g: dict, moved: int) -> dict:
    """One aggregation of 4 equal clients; client 0 moved weight [0, 0] of W up one grid
    step (its codes changed), the others kept the model they received: the mean moves a
    quarter step, less than the half step that rounding to the grid erases."""
    s = float(g["1.w_step"][0])
    results = []
    for c in range(4):
        t = {k: v.copy() for k, v in g.items()}
        if c < moved:
            t[W][0, 0] += s
        results.append(ClientResult(c, t, num_samples=10, train_loss=0.0, metrics={}))
    return algo.aggregate(1, g, results)


@pytest.mark.parametrize("server_latent", [True, False])
def test_sub_half_step_updates_survive_with_the_server_latent(server_latent):
    algo, g = _server(server_latent)
    assert algo._bits == {"0": 8, "1": 4, "3": 8}
    s = float(g["1.w_step"][0])
    start = float(g[W][0, 0])
    assert np.array_equal(g[W], project(g[W], s, 4))  # the global model is on the grid
    # keep the weight inside the clipping range so one step up is representable
    assert -8 * s <= start < 6 * s
    if server_latent:  # the latent starts at the fp32 init; start it on the grid point here
        assert algo.latent[W].shape == g[W].shape
        algo.latent[W] = g[W].copy()
    for _ in range(3):  # 3 rounds of +s/4: the latent reaches +0.75 s and rounds to +s
        g = _round(algo, g, moved=1)
    moved = round((float(g[W][0, 0]) - start) / s)
    if server_latent:
        assert moved == 1
        assert np.isclose(float(algo.latent[W][0, 0]) - start, 0.75 * s, atol=1e-6 * s)
    else:  # the first build: each round's mean is projected back, the change is erased
        assert moved == 0
    # the other weights did not move either way
    assert np.array_equal(np.delete(g[W].ravel(), 0), np.delete(project(g[W], s, 4).ravel(), 0))


def test_the_latent_is_declared_server_state():
    algo, g = _server(True)
    g = _round(algo, g, moved=1)
    saved = algo.server_state()
    assert set(saved) == {"latent"} and W in saved["latent"]
    fresh, _ = _server(True)
    fresh.load_server_state(saved)
    assert np.array_equal(fresh.latent[W], algo.latent[W])


def test_stochastic_rounding_is_unbiased_and_nearest_erases():
    s, bits = 0.1, 4
    w = np.full(20000, 0.3 * s, np.float32)  # 0.3 of a step above the grid point 0
    nearest = decode_tensors([int_record("w", w, s, bits)])["w"]
    assert np.all(nearest == 0)
    rng = np.random.default_rng(1)
    sto = decode_tensors([int_record("w", w, s, bits, rng)])["w"]
    assert set(np.round(np.unique(sto) / s).astype(int)) == {0, 1}
    assert abs(float(sto.mean()) - 0.3 * s) < 0.01 * s
    # outside the range codes clip as with nearest rounding
    far = decode_tensors([int_record("w", np.full(10, 100.0, np.float32), s, bits, rng)])["w"]
    assert np.allclose(far, 7 * s)


TINY = {
    "name": "tiny",
    "seed": 1,
    "rounds": 4,
    "data": {"dataset": "digits"},
    "model": {"name": "mlp", "args": {"hidden": [64]}},
    "clients": {"count": 4, "per_round": 2},
    "train": {"local_steps": 3, "batch_size": 16, "lr": 0.1},
    "algorithm": {"name": "oqfl", "bits": 4, "wire": "int", "first_last_bits": 0},
    "runtime": {"checkpoint_every": 1},
}


def test_int_wire_resumed_run_has_the_fresh_hash(tmp_path, crash_and_resume):
    from fedsim.runtime import coordinator as coord
    from fedsim.scenario.load import validate_doc

    sc = validate_doc(json.loads(json.dumps(TINY)))
    fresh = coord.Coordinator(sc, tmp_path / "fresh").run()
    resumed = crash_and_resume(sc, tmp_path / "resumed")
    assert resumed["resumed"] is True
    assert resumed["model_sha256"] == fresh["model_sha256"]
    rows = [json.loads(x) for x in (tmp_path / "fresh/metrics.jsonl").read_text().splitlines()]
    # both directions carry 4-bit codes for the weights (fp32 only for biases and steps)
    fp32 = 4 * fresh["model_params"] * rows[0]["aggregated"]  # both clients' bytes
    assert rows[0]["bytes_down"] < 0.25 * fp32
    assert rows[0]["bytes_up"] < 0.25 * fp32
