"""Build the network model for a scenario: device population, server links, availability."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fedsim.errors import ScenarioError
from fedsim.network.availability import AlwaysOn, MarkovOnOff, load_trace
from fedsim.network.devices import (
    DeviceProfile,
    MixEntry,
    PowerModel,
    build_population,
    power_models,
)
from fedsim.network.energy import client_energy
from fedsim.network.links import DOWN, UP
from fedsim.network.rounds import ClientJob, NetworkModel
from fedsim.runtime import seeding

# scenario key -> DeviceProfile field
_OVERRIDES = {
    "up": "up_bps",
    "down": "down_bps",
    "rtt": "rtt_s",
    "flops": "flops",
    "loss": "loss",
    "jitter": "jitter",
}


class ScenarioNetwork:
    """The coordinator's view: the network model plus per-client device lookups."""

    def __init__(self, model: NetworkModel, powers: list[PowerModel]):
        self.model = model
        self.powers = powers

    def energy(
        self, c: int, tl: Any, down_bytes: int, up_bytes: int, compute_s: float, round_end: float
    ) -> dict:
        """Joules client c spent on this timeline (network/energy.py)."""
        caps = self.model.paths.caps
        return client_energy(
            self.powers[c],
            tl,
            down_bytes,
            up_bytes,
            compute_s,
            round_end,
            down_bps=caps[DOWN][c] * 8.0,
            up_bps=caps[UP][c] * 8.0,
        )

    @property
    def devices(self) -> tuple[DeviceProfile, ...]:
        return self.model.devices

    def device(self, c: int) -> DeviceProfile:
        return self.model.devices[c]

    def device_flops(self, c: int) -> float:
        return self.model.devices[c].flops

    def online_clients(self, t: float) -> list[int]:
        return self.model.online_clients(t)

    def sample_online(self, t: float, m: int, rng, exclude=()) -> list[int]:
        return self.model.sample_online(t, m, rng, exclude)

    def run_sync_round(self, t0: float, jobs, *, accept_first=None, deadline_s=None):
        cj = [ClientJob(int(c), int(d), float(comp), int(u)) for c, d, comp, u in jobs]
        return self.model.run_sync_round(t0, cj, accept_first=accept_first, deadline_s=deadline_s)

    def describe(self) -> list[dict[str, Any]]:
        return list(self.iter_describe())

    def iter_describe(self) -> Iterator[dict[str, Any]]:
        return (
            {
                "client": i,
                "profile": d.name,
                "up_bps": d.up_bps,
                "down_bps": d.down_bps,
                "rtt_s": d.rtt_s,
                "flops": d.flops,
                "loss": d.loss,
                "jitter": d.jitter,
            }
            for i, d in enumerate(self.model.devices)
        )

    def write_devices(self, path: Path) -> None:
        """devices.json, one device at a time: a 100,000-client table never exists as a list
        of dicts (which alone would take about 200 MB)."""
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w") as fh:
            fh.write('{\n "devices": [')
            for i, row in enumerate(self.iter_describe()):
                fh.write(("\n  " if i == 0 else ",\n  ") + json.dumps(row))
            fh.write("\n ]\n}\n")
        tmp.replace(path)


def build_network(scenario: Any) -> ScenarioNetwork:
    net = scenario.network
    mix = []
    for d in net.devices:
        overrides = {_OVERRIDES[k]: getattr(d, k) for k in _OVERRIDES if getattr(d, k) is not None}
        mix.append(MixEntry(profile=d.profile, share=d.share, overrides=overrides, spread=d.spread))
    try:
        devices = build_population(
            scenario.clients.count, mix, seeding.rng_for(scenario.seed, seeding.NETWORK, 0, 0)
        )
    except (KeyError, ValueError) as e:
        raise ScenarioError(str(e).strip("'\""), field="network.devices") from None
    av = net.availability
    if av.model == "always":
        availability = AlwaysOn()
    elif av.model == "markov":
        availability = MarkovOnOff(
            mean_on_s=av.mean_on,
            mean_off_s=av.mean_off,
            seed=seeding.derive_seed(scenario.seed, seeding.NETWORK, 1),
        )
    else:
        try:
            availability = load_trace(av.trace)
        except (OSError, ValueError) as e:
            raise ScenarioError(str(e), field="network.availability.trace") from None
    model = NetworkModel(
        devices,
        net.server_up,
        net.server_down,
        availability,
        seed=seeding.derive_seed(scenario.seed, seeding.NETWORK, 2),
        bandwidth_factor=net.bandwidth_factor,
        latency_factor=net.latency_factor,
        message_overhead_s=net.message_overhead,
    )
    try:
        powers = power_models(devices, {d.profile: d.power for d in net.devices if d.power})
    except (KeyError, ValueError) as e:
        raise ScenarioError(str(e).strip("'\""), field="network.devices") from None
    return ScenarioNetwork(model, powers)
