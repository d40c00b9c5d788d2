"""Post-training quantization evaluation (fedsim/eval/ptq.py)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from fedsim.eval.ptq import DEFAULT_CONFIGS, calibrate, parse_config, ptq_table, quantize_copy


def test_parse_config():
    assert parse_config("W8A8") == (8, 8)
    assert parse_config("w4a8") == (4, 8)
    assert parse_config("W3") == (3, None)
    with pytest.raises(ValueError):
        parse_config("A8")


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
