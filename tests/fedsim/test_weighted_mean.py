"""weighted_mean: the float64, client-id-ordered sample-weighted mean, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from fedsim.algorithms.base import ClientResult, weighted_mean


def _reference(results, weighted=True):
    results = sorted(results, key=lambda r: (r.client_id, r.staleness))
    total = sum(r.num_samples for r in results) if weighted else len(results)
    out = {}
    for name in results[0].tensors:
        acc = None
        for r in results:
            w = r.weight * (r.num_samples if weighted else 1) / total
            term = w * r.tensors[name].astype(np.float64)
            acc = term if acc is None else acc + term
        out[name] = acc.astype(np.float32)
    return out


@pytest.mark.parametrize("weighted", [True, False])
def test_the_same_bits_as_the_float64_formula_in_client_order(weighted):
    rng = np.random.default_rng(3)
    shapes = {"conv.weight": (8, 1, 5, 5), "fc.bias": (10,), "scalar": ()}
    results = [
        ClientResult(
            client_id=int(cid),
            tensors={
                k: rng.standard_normal(s).astype(np.float32) * 10.0 ** rng.integers(-6, 6)
                for k, s in shapes.items()
            },
            num_samples=int(rng.integers(1, 500)),
            train_loss=0.0,
            metrics={},
            staleness=int(st),
            weight=float(rng.uniform(0.1, 1.0)),
        )
        for cid, st in [(7, 0), (2, 1), (11, 0), (2, 0), (5, 3)]
    ]
    got = weighted_mean(results, weighted=weighted)
    want = _reference(results, weighted)
    assert set(got) == set(shapes)
    for k in shapes:
        assert got[k].dtype == np.float32 and got[k].shape == shapes[k]
        assert got[k].tobytes() == want[k].tobytes()
    # the order the results arrive in does not matter
    again = weighted_mean(results[::-1], weighted=weighted)
    assert all(again[k].tobytes() == got[k].tobytes() for k in shapes)
