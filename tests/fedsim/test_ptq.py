"""Post-training quantization evaluation (fedsim/eval/ptq.py)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from fedsim.eval.ptq import DEFAULT_CONFIGS, calibrate, parse_config, ptq_table, quantize_copy


def test_parse_config():
    assert parse_config("W8A8") == (8, 8, True)
    assert parse_config("w4a8") == (4, 8, True)
    assert parse_config("W3") == (3, None, True)
    assert parse_config("W3A3") == (3, 3, True)
    assert parse_config("W2A8") == (2, 8, True)
    assert parse_config("W2PT") == (2, None, False)
    assert parse_config("w4a4pt") == (4, 4, False)
    for bad in ("A8", "W2P", "W2TP", "W4A", "W4A99", "W0"):
        with pytest.raises(ValueError):
            parse_config(bad)


def _toy():
    """A linearly separable 2-class problem and a linear+ReLU+linear model that solves it."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    ds = SimpleNamespace(x_train=x[:400], y_train=y[:400], x_test=x[400:], y_test=y[400:])
    return model, ds


def test_ptq_table_shape_and_monotone_extremes():
    model, ds = _toy()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    table = ptq_table(model, ds, DEFAULT_CONFIGS, calib_batches=2, batch_size=64)
    assert list(table) == ["fp32", *DEFAULT_CONFIGS]
    assert table["fp32"] > 0.9
    assert abs(table["W8A8"] - table["fp32"]) <= 0.02  # 8 bits: essentially lossless
    assert all(0.0 <= v <= 1.0 for v in table.values())
    # the model itself is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_quantize_copy_weight_levels_per_channel():
    model, ds = _toy()
    ranges = calibrate(model, torch.from_numpy(ds.x_train), 2, 64)
    assert set(ranges) == {"0", "2"}
    q = quantize_copy(model, 2, None, ranges)
    for m in (q[0], q[2]):
        for row in m.weight.detach():
            assert len(torch.unique(row)) <= 4  # 2-bit signed codes per channel


def test_quantize_copy_per_tensor_shares_one_scale():
    """Per tensor: one step for the whole layer, so a channel of small weights loses its
    levels (per channel it keeps its own)."""
    model = nn.Sequential(nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -0.4, 0.25, 0.0], [0.01, -0.02, 0.03, 0.0]]))
    per_channel = quantize_copy(model, 3, None, {})[0].weight.detach()
    per_tensor = quantize_copy(model, 3, None, {}, per_channel=False)[0].weight.detach()
    # 3 bits: Q_P = 3; per tensor the step is 1/3 for both rows, so row 1 rounds to zero
    assert torch.allclose(per_tensor[0], torch.tensor([1.0, -1 / 3, 1 / 3, 0.0]))
    assert torch.equal(per_tensor[1], torch.zeros(4))
    # per channel row 1 has its own step 0.01 and keeps every weight
    assert torch.allclose(per_channel[1], torch.tensor([0.01, -0.02, 0.03, 0.0]), atol=1e-6)
    levels = torch.unique(per_tensor)
    assert len(levels) <= 2**3


def test_ptq_table_columns_of_the_quantization_page():
    """W3A3, W2A8 and per-tensor W3/W2 run through the same path; per-tensor 2-bit weights
    cannot beat per-channel ones on a model with channels of different scale."""
    model, ds = _toy()
    with torch.no_grad():
        model[0].weight[:8] *= 20.0  # half of the hidden units have much larger weights
        model[0].bias[:8] *= 20.0
    configs = ("W3A3", "W2A8", "W2", "W3PT", "W2PT")
    table = ptq_table(model, ds, configs, calib_batches=2, batch_size=64)
    assert list(table) == ["fp32", *configs]
    pt = quantize_copy(model, 2, None, {}, per_channel=False)
    pc = quantize_copy(model, 2, None, {})
    assert not torch.equal(pt[0].weight, pc[0].weight)
    assert table["W2PT"] == pytest.approx(
        float((pt(torch.from_numpy(ds.x_test)).argmax(1).numpy() == ds.y_test).mean())
    )
