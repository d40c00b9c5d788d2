"""Builders shared by the coordinator and every client process: data, partitions, model.

They depend only on the scenario, so a worker process rebuilds exactly what the
coordinator has (same split, same partitions, same architecture) from the resolved file.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fedsim.data import load_dataset
from fedsim.data.partition import partition
from fedsim.errors import ScenarioError
from fedsim.models import build_model
from fedsim.runtime import seeding


def load_data(scenario: Any):
    d = scenario.data
    opts: dict[str, Any] = dict(d.options)
    if d.dataset == "synthetic":
        opts = dict(d.synthetic.model_dump()) | opts
    return load_dataset(
        d.dataset, root=d.root, download=d.download, seed=scenario.seed, path=d.path, **opts
    )


def make_partitions(scenario: Any, dataset) -> list[np.ndarray]:
    d = scenario.data
    rng = seeding.rng_for(scenario.seed, seeding.PARTITION)
    opts: dict[str, Any] = {}
    if d.partition == "dirichlet":
        opts = {"alpha": d.alpha, "min_size": d.min_size}
    elif d.partition == "shards":
        opts = {"shards_per_client": d.shards_per_client}
    elif d.partition == "size_skew":
        opts = {"sigma": d.size_sigma}
    elif d.partition == "natural":
        opts = {"groups": dataset.groups}
    try:
        return partition(d.partition, dataset.y_train, scenario.clients.count, rng, **opts)
    except ValueError as e:
        raise ScenarioError(str(e), field="data.partition") from None


def make_model(scenario: Any, dataset) -> torch.nn.Module:
    m = scenario.model
    torch.manual_seed(seeding.derive_seed(scenario.seed, seeding.INIT))
    try:
        return build_model(m.name, tuple(dataset.input_shape), dataset.num_classes, **m.args)
    except TypeError as e:
        raise ScenarioError(f"bad model argument: {e}", field="model.args") from None
