"""Quantization methods: LSQ gradients, KURE statistics, FedDQ's and AdaQuantFL's rules,
OQFL's int wire records, and a tiny end-to-end run of every method."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fedsim.codecs.pipeline import decode_tensors, parse_codec
from torch import nn

from fedsim.algorithms.adaquantfl import adaquant_level
from fedsim.algorithms.feddq import level_bits, loss_level, range_bits
from fedsim.algorithms.oqfl import int_record, project
from fedsim.algorithms.qbaselines import paper_bits
from fedsim.algorithms.quant_robust import Hetero, HeteroOptions
from fedsim.models.quant import (
    fake_quant_symmetric,
    kurtosis,
    lsq_bits,
    lsq_convert,
    lsq_quantize,
    signed_range,
)


# ---- LSQ -------------------------------------------------------------------------------
def test_lsq_step_gradient_matches_hand_formula():
    bits = 3
    qn, qp = signed_range(bits)  # 4, 3
    x = torch.tensor([-1.0, -0.33, 0.0, 0.12, 0.26, 0.74, 2.0], requires_grad=True)
    s = torch.tensor([0.2], requires_grad=True)
    y = lsq_quantize(x, s, qn, qp)
    y.sum().backward()
    v = x.detach() / 0.2
    # inside the range: round(x/s) - x/s; below: -Q_N; above: Q_P; scaled by 1/sqrt(n*Q_P)
    per = torch.where(v <= -qn, -float(qn), torch.where(v >= qp, float(qp), torch.round(v) - v))
    g = 1.0 / math.sqrt(x.numel() * qp)
    assert s.grad.item() == pytest.approx(float(per.sum()) * g, rel=1e-5)
    # straight-through for x inside the range, zero outside
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    expected = torch.clamp(torch.round(v), -qn, qp) * 0.2
    assert torch.allclose(y.detach(), expected)


def test_lsq_convert_keeps_names_and_is_idempotent():
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    names = set(model.state_dict())
    bits = lsq_convert(model, 4, first_last_bits=8, act_bits=4)
    assert bits == {"0": 8, "2": 4, "4": 8}
    assert lsq_convert(model, 4, first_last_bits=8, act_bits=4) == bits
    sd = model.state_dict()
    assert names <= set(sd) and {"2.w_step", "2.a_step"} <= set(sd)
    # a plain model's state loads (steps keep their values)
    plain = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    model.load_state_dict(plain.state_dict())
    model.train()
    out = model(torch.randn(8, 6))
    assert out.shape == (8, 3) and float(model[2].a_step.detach()) > 0  # initialized on the batch
    assert lsq_bits(model) == bits


# ---- KURE ------------------------------------------------------------------------------
def test_kurtosis_uniform_and_gaussian():
    g = torch.Generator().manual_seed(0)
    u = torch.rand(1_000_000, generator=g) * 2 - 1
    n = torch.randn(1_000_000, generator=g)
    assert float(kurtosis(u)) == pytest.approx(1.8, abs=0.05)
    assert float(kurtosis(n)) == pytest.approx(3.0, abs=0.1)


def test_fake_quant_symmetric_levels_and_ste():
    w = torch.linspace(-1, 1, 101).reshape(1, -1).requires_grad_()
    q = fake_quant_symmetric(w, 3)
    assert len(torch.unique(q.detach())) <= 8
    q.sum().backward()
    assert torch.all(w.grad == 1)


# ---- FedDQ / AdaQuantFL -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        (-0.5, 0.5, 8),  # r/res = 200 -> log2 = 7.64 -> 8
        (0.0, 0.32, 6),  # 64 exactly -> 6
        (0.0, 0.33, 7),  # just above 64 -> 7
        (-0.01, 0.01, 2),  # 4 -> 2
        (0.0, 0.006, 1),  # 1.2 -> ceil(0.26) = 1
        (0.0, 0.004, 1),  # below the resolution -> b_min
        (0.3, 0.3, 1),  # constant (r = 0) -> b_min
        (-1e6, 1e6, 16),  # clamped to b_max
    ],
)
def test_feddq_range_bits(lo, hi, expected):
    x = np.array([lo, (lo + hi) / 2, hi], np.float32)
    assert range_bits(x, 0.005, 1, 16) == expected


def test_feddq_range_bits_clamps_to_b_min():
    assert range_bits(np.array([0.0, 0.001], np.float32), 0.005, b_min=2) == 2


def test_feddq_loss_rule_descends():
    s = [loss_level(256, 2.0, f, 1.0, 1) for f in (2.0, 1.0, 0.5, 0.1, 0.0)]
    assert s == [256, 128, 64, 13, 1]
    assert [level_bits(v) for v in (1, 3, 4, 255, 256)] == [1, 2, 3, 8, 9]


def test_adaquantfl_level_rule_ascends():
    assert adaquant_level(2, None, None) == 2  # round 1: s_0
    assert adaquant_level(2, 2.0, 2.0) == 2
    assert adaquant_level(2, 2.0, 0.5) == 4  # 2*sqrt(4)
    assert adaquant_level(2, 2.0, 0.1) == math.ceil(2 * math.sqrt(20))  # 9
    assert adaquant_level(2, 2.0, 1e-12, s_max=64) == 64


def test_paper_bits():
    assert paper_bits("q4", (10, 10)) == 4 * 100 + 64
    assert paper_bits("q4:per=channel", (10, 10)) == 4 * 100 + 64 * 10
    assert paper_bits("qsgd:s=16", (100,)) == 6 * 100 + 32
    assert paper_bits("ef(sign)", (100,)) == 100 + 32
    assert paper_bits("fp32", (7,)) == 224


# ---- OQFL int wire -------------------------------------------------------------------
def test_oqfl_int_record_is_exact_on_grid():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 9)).astype(np.float32) * 0.1
    s, bits = 0.03, 4
    rec = int_record("w", w, s, bits)
    assert rec.codec == "q4"
    assert len(rec.buffers[0]) == 16 * 9 * 4 // 8
    dec = decode_tensors([rec])["w"]
    assert np.allclose(dec, project(w, s, bits), atol=1e-6)
    # the standard decoder is the one used
    assert np.allclose(parse_codec("q4").decode(rec), dec)


def test_hetero_bits_from_profile_or_fallback():
    algo = Hetero(SimpleNamespace(), HeteroOptions(bit_choices=[4, 6, 8]))
    assert algo.client_bits(4, None) == 6
    assert algo.client_bits(5, SimpleNamespace(name="phone-4g")) == 4
    assert algo.client_bits(5, SimpleNamespace(name="laptop-wifi")) == 8
    assert algo.client_bits(0, SimpleNamespace(name="unknown")) == 4


# ---- end to end --------------------------------------------------------------------------
TINY = """
name = "tiny"
seed = 0
rounds = 2
[data]
dataset = "digits"
[model]
name = "mlp"
hidden = [16]
[clients]
count = 4
per_round = 2
[train]
local_steps = 3
batch_size = 16
lr = 0.1
[algorithm]
name = "fedavg"
"""


@pytest.mark.parametrize(
    ("algorithm", "uplink", "extra"),
    [
        ("oqfl", "fp32", "bits = 4"),
        ("oqfl", "fp32", 'bits = 4\nwire = "int"'),
        ("feddq", "fp32", ""),
        pytest.param(
            *("feddq", "fp32", 'mode = "loss"\nrounding = "stochastic"'), marks=pytest.mark.slow
        ),
        ("adaquantfl", "fp32", ""),
        pytest.param(*("fedpaq", "ef(sign)", ""), marks=pytest.mark.slow),
        pytest.param(*("kure", "fp32", 'ptq_configs = ["W8A8", "W2"]'), marks=pytest.mark.slow),
        pytest.param(*("mqat", "fp32", 'ptq_configs = ["W4A4"]'), marks=pytest.mark.slow),
        pytest.param(*("hetero", "fp32", "ptq = false"), marks=pytest.mark.slow),
    ],
)
def test_methods_run_end_to_end(tmp_path, algorithm, uplink, extra):
    from fedsim.runtime.coordinator import Coordinator
    from fedsim.scenario import load_scenario

    text = TINY.replace("hidden = [16]", "args = { hidden = [16] }")
    text = text.replace('name = "fedavg"', f'name = "{algorithm}"\n{extra}')
    text += f'[codec]\nuplink = "{uplink}"\n'
    path = tmp_path / "s.toml"
    path.write_text(text)
    summary = Coordinator(load_scenario(path, []), tmp_path / "out").run()
    assert summary["final_accuracy"] is not None
    rows = [json.loads(x) for x in (tmp_path / "out/metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    if algorithm in ("feddq", "adaquantfl", "fedpaq", "oqfl"):
        assert last["paper_bits_up"] > 0
    if algorithm == "kure":
        assert set(last) >= {"ptq_fp32", "ptq_W8A8", "ptq_W2"}
    if algorithm == "oqfl" and "int" in extra:
        # int codes up (8 bits here: both layers are first/last) + fp32 steps and biases
        fp32_bytes = 4 * summary["model_params"] * rows[0]["aggregated"]
        assert rows[0]["bytes_up"] < 0.6 * fp32_bytes
