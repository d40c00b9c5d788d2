"""One experiment built from a scenario, identical in every process that builds it.

An `Experiment` holds what both roles need — the dataset, the clients' partitions, a model
factory, the evaluator and the FLOP model — and nothing that changes during a run. The
coordinator builds one (and from it the network and the server's `ServerContext`); every
client actor builds its own from the resolved scenario file, so a worker process on another
host has the same split, the same partitions and the same initial model.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
import torch

from fedsim.algorithms import build_algorithm
from fedsim.algorithms.base import Algorithm, ServerContext
from fedsim.eval.evaluate import evaluate
from fedsim.runtime import seeding
from fedsim.runtime.build import load_data, make_model, make_partitions
from fedsim.runtime.device import make_deterministic, resolve_device
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
        # training and evaluation tensors live here; the server's models stay on the CPU
        # (their state is numpy, FLOPs are counted there), clients' models move to it
        self.device = resolve_device(scenario.runtime.device)
        if self.device.type == "cuda":
            make_deterministic()
        self.dataset = load_data(scenario)
        self.partitions = make_partitions(scenario, self.dataset)
        self.sizes = [len(p) for p in self.partitions]
        self.x_train = readonly_tensor(self.dataset.x_train).to(self.device)
        self.y_train = readonly_tensor(self.dataset.y_train).to(self.device)
        self.x_test = readonly_tensor(self.dataset.x_test).to(self.device)
        self.y_test = readonly_tensor(self.dataset.y_test).to(self.device)
        self._union: tuple[torch.Tensor, torch.Tensor] | None = None  # train_loss's data

    def algorithm(self) -> Algorithm:
        """A fresh instance of the scenario's method (one per role)."""
        return build_algorithm(self.scenario)

    def new_model(self, algorithm: Algorithm) -> torch.nn.Module:
        """The initial model (seeded), prepared by `algorithm` as every process prepares it."""
        model = make_model(self.scenario, self.dataset)
        algorithm.prepare_model(model)
        return model

    def evaluate(self, model: torch.nn.Module) -> tuple[float, float]:
        """Test accuracy and loss on the run's device (a copy of `model` there, if it is not)."""
        if next(model.parameters()).device != self.device:
            model = copy.deepcopy(model).to(self.device)
        return evaluate(model, self.x_test, self.y_test, self.scenario.eval.batch_size)

    def train_loss(self, model: torch.nn.Module) -> float:
        """F(w) = Σ_k (n_k/n)·F_k(w): the mean cross-entropy of `model` over the union of the
        clients' training data (every sample some client holds, each once)."""
        if self._union is None:
            idx = np.unique(np.concatenate([np.asarray(p) for p in self.partitions]))
            at = torch.from_numpy(idx).to(self.device)
            self._union = (self.x_train[at], self.y_train[at])
        if next(model.parameters()).device != self.device:
            model = copy.deepcopy(model).to(self.device)
        return evaluate(model, *self._union, self.scenario.eval.batch_size)[1]

    def train_flops_per_sample(self, model: torch.nn.Module) -> float:
        """Counted on the CPU whatever the device: simulated time never depends on it."""
        if next(model.parameters()).device.type != "cpu":
            model = copy.deepcopy(model).cpu()
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
            train_loss=self.train_loss,
            rng=lambda rnd, client=0: seeding.rng_for(seed, seeding.ALGORITHM, rnd, client),
        )
