"""FedAvg (McMahan et al., AISTATS 2017): local SGD, sample-weighted mean of the updates.

The client sends Δ = w_local − w_global through the uplink codec; the server applies
w ← w + Σ_k (n_k/n)·Δ_k. With an fp32 codec this is exactly the weighted mean of weights.
"""

from __future__ import annotations

from fedsim.algorithms.base import Algorithm


class FedAvg(Algorithm):
    name = "fedavg"
    summary = "FedAvg: sample-weighted average of local updates (McMahan et al. 2017)"
