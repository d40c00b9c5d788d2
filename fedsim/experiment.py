"""One experiment built from a scenario, identical in every process that builds it.

An `Experiment` holds what both roles need — the dataset, the clients' partitions, a model
factory, the evaluator and the FLOP model — and nothing that changes during a run. The
coordinator builds one (and from it the network and the server's `ServerContext`); every
client actor builds its own from the resolved scenario file, so a worker process on another
host has the same split, the same partitions and the same initial model.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from fedsim.algorithms import build_algorithm
from fedsim.algorithms.base import Algorithm, ServerContext
from fedsim.eval.evaluate import evaluate
from fedsim.runtime import seeding
from fedsim.runtime.build import load_data, make_model, make_partitions
from fedsim.runtime.flops import FlopModel


def readonly_tensor(a: np.ndarray) -> torch.Tensor:
    """A tensor view of a cached, read-only dataset array (never written to)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(np.ascontiguousarray(a))


class Experiment:
    def __init__(self, scenario: Any):
        self.scenario = scenario
        torch.set_num_threads(scenario.runtime.torch_threads)
        self.dataset = load_data(scenario)
        self.partitions = make_partitions(scenario, self.dataset)
        self.sizes = [len(p) for p in self.partitions]
        self.x_train = readonly_tensor(self.dataset.x_train)
        self.y_train = readonly_tensor(self.dataset.y_train)
        self.x_test = readonly_tensor(self.dataset.x_test)
        self.y_test = readonly_tensor(self.dataset.y_test)

    def algorithm(self) -> Algorithm:
        """A fresh instance of the scenario's method (one per role)."""
        return build_algorithm(self.scenario)

    def new_model(self, algorithm: Algorithm) -> torch.nn.Module:
        """The initial model (seeded), prepared by `algorithm` as every process prepares it."""
        model = make_model(self.scenario, self.dataset)
        algorithm.prepare_model(model)
        return model

    def evaluate(self, model: torch.nn.Module) -> tuple[float, float]:
        return evaluate(model, self.x_test, self.y_test, self.scenario.eval.batch_size)

    def train_flops_per_sample(self, model: torch.nn.Module) -> float:
        shape = tuple(self.dataset.input_shape)
        return FlopModel(model, shape, self.scenario.train.batch_size).train_flops(1)

    def server_context(self, algorithm: Algorithm) -> ServerContext:
        seed = self.scenario.seed
        return ServerContext(
            scenario=self.scenario,
            dataset=self.dataset,
            new_model=lambda: self.new_model(algorithm),
            evaluate=self.evaluate,
            train_flops_per_sample=self.train_flops_per_sample,
            rng=lambda rnd, client=0: seeding.rng_for(seed, seeding.ALGORITHM, rnd, client),
        )
