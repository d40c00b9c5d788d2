"""Drawing the clients of a round: uniform, and with work proportional to the draw."""

from __future__ import annotations

import numpy as np
import pytest
from fedsim.network.availability import AlwaysOn, MarkovOnOff, TraceAvailability
from fedsim.network.devices import build_population
from fedsim.network.rounds import NetworkModel
from fedsim.network.selection import sample_online


class Counting:
    """An availability model that counts the questions it is asked."""

    def __init__(self, inner):
        self.inner = inner
        self.asked: set[int] = set()
        self.queries = 0

    def is_online(self, device, t):
        self.queries += 1
        self.asked.add(device)
        return self.inner.is_online(device, t)

    def next_offline(self, device, t):
        return self.inner.next_offline(device, t)

    def next_online(self, device, t):
        return self.inner.next_online(device, t)


@pytest.mark.parametrize("n,m,exclude", [(100_000, 1000, ()), (20, 5, ()), (100, 30, (3, 50, 99))])
def test_always_on_draws_the_clients_a_choice_over_the_eligible_list_draws(n, m, exclude):
    # the runtime used rng.choice(list of eligible ids): the same seeds keep the same rounds
    eligible = [c for c in range(n) if c not in exclude]
    old = sorted(int(c) for c in np.random.default_rng(7).choice(eligible, m, replace=False))
    new = sample_online(AlwaysOn(), n, 0.0, m, np.random.default_rng(7), set(exclude))
    assert new == old


def test_markov_selection_asks_only_the_devices_it_draws():
    n, m = 100_000, 50
    avail = Counting(MarkovOnOff(mean_on_s=600, mean_off_s=600, seed=3))  # half online
    picked = sample_online(avail, n, 1234.5, m, np.random.default_rng(0))
    assert len(picked) == m and picked == sorted(set(picked))
    assert all(avail.inner.is_online(c, 1234.5) for c in picked)
    # about m / 0.5 questions, nowhere near the population; and each device at most once
    assert avail.queries == len(avail.asked) < 10 * m
    assert len(avail.inner._devices) < 10 * m  # the Markov model built state for those only


def test_network_model_selection_never_walks_the_population(monkeypatch):
    devices = build_population(100_000, [{"profile": "phone-4g", "share": 1.0}], 0)
    avail = Counting(MarkovOnOff(mean_on_s=100, mean_off_s=300, seed=1))  # a quarter online
    model = NetworkModel(devices, 1e9, 1e9, avail, seed=0)
    monkeypatch.setattr(model, "online_clients", lambda t: pytest.fail("O(population) scan"))
    for r in range(5):
        got = model.sample_online(50.0 * r, 100, np.random.default_rng(r), exclude={1, 2})
        assert len(got) == 100 and not {1, 2} & set(got)
    assert avail.queries < 5 * 100 * 20


def test_selection_is_uniform_over_online_not_excluded_devices():
    n, m, draws = 30, 4, 6000
    trace = TraceAvailability({d: [(0.0, 10.0)] for d in range(0, n, 2)}, missing="offline")
    counts = np.zeros(n)
    rng = np.random.default_rng(5)
    for _ in range(draws):
        for c in sample_online(trace, n, 1.0, m, rng, exclude={4}):
            counts[c] += 1
    eligible = [d for d in range(0, n, 2) if d != 4]
    assert counts[[d for d in range(n) if d not in eligible]].sum() == 0
    expected = draws * m / len(eligible)
    # each eligible device: binomial, sd = sqrt(np(1-p)) ~ 17; 6 sd is a bug, not bad luck
    assert np.all(np.abs(counts[eligible] - expected) < 6 * np.sqrt(expected))


def test_fewer_online_than_asked_gives_all_of_them():
    trace = TraceAvailability({1: [(0, 5)], 7: [(0, 5)], 8: [(6, 9)]}, missing="offline")
    assert sample_online(trace, 10, 1.0, 5, np.random.default_rng(0)) == [1, 7]
    assert sample_online(AlwaysOn(), 4, 0.0, 9, np.random.default_rng(0), {2}) == [0, 1, 3]
    assert sample_online(AlwaysOn(), 4, 0.0, 0, np.random.default_rng(0)) == []
