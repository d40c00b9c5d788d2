"""The scenario file schema (pydantic). Unknown keys are rejected everywhere.

Units are accepted the way people write them ("20Mbit/s", "50ms", "2GFLOP/s", "1.5MB")
and stored as SI floats after validation; the resolved scenario written next to a run
keeps the SI numbers so it reloads to exactly the same values.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from fedsim.network.links import (
    DEFAULT_BANDWIDTH_FACTOR,
    DEFAULT_LATENCY_FACTOR,
    DEFAULT_MESSAGE_OVERHEAD_S,
)
from fedsim.scenario import units


def _unit(fn):
    def check(v: object) -> object:
        if v is None:
            return v
        try:
            return fn(v)
        except ValueError as e:
            raise ValueError(str(e)) from None

    return BeforeValidator(check)


class UnitName(str):
    """Marks a unit-carrying field for the generated reference (docs/scenarios.md)."""


Rate = Annotated[float, _unit(units.parse_rate), Field(gt=0), UnitName('rate ("20Mbit/s")')]
Duration = Annotated[float, _unit(units.parse_duration), Field(ge=0), UnitName('duration ("50ms")')]
Period = Annotated[float, _unit(units.parse_duration), Field(gt=0), UnitName('duration ("50ms")')]
Flops = Annotated[float, _unit(units.parse_flops), Field(gt=0), UnitName('FLOP/s ("2GFLOP/s")')]
Bytes = Annotated[float, _unit(units.parse_bytes), Field(ge=0), UnitName('size ("1.5MB")')]


class Strict(BaseModel):
    # strict: no bool for a number, no string for a number ("20Mbit/s" goes through the unit
    # parsers above first); allow_inf_nan: a scenario never holds inf or nan.
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False
    )


class SyntheticCfg(Strict):
    shape: list[int] = Field(
        default_factory=lambda: [1, 28, 28],
        min_length=1,
        description="input shape of synthetic samples",
    )
    classes: int = Field(10, ge=2, description="number of synthetic classes")
    train_size: int = Field(4000, ge=1, description="synthetic training samples")
    test_size: int = Field(1000, ge=1, description="synthetic test samples")
    noise: float = Field(1.0, ge=0, description="noise around class prototypes")

    @field_validator("shape")
    @classmethod
    def _positive_sizes(cls, v: list[int]) -> list[int]:
        if min(v) < 1:
            raise ValueError("every size must be >= 1")
        return v


class DataCfg(Strict):
    dataset: str = Field(
        "mnist5k",
        description='see `fedsim list datasets`; "npz", "csv", "image-folder" read data.path; '
        'or an import path "package.module:load" (docs/extending.md)',
    )
    root: str | None = Field(
        None, description="folder holding torchvision dataset files (relative to the scenario file)"
    )
    download: bool = Field(False, description="let torchvision download missing files")
    path: str | None = Field(
        None,
        description="file or folder that npz, csv and image-folder read (relative to the scenario file)",
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description='keyword arguments of the dataset loader, e.g. {label = "y", client = "writer"} (csv)',
    )
    partition: Literal["iid", "dirichlet", "shards", "size_skew", "natural"] = Field(
        "iid",
        description="how training data is split across clients; natural: one client per "
        "client id in the data (csv client column, npz client array, image-folder client folders)",
    )
    alpha: float = Field(0.5, gt=0, description="Dirichlet concentration (partition = dirichlet)")
    min_size: int = Field(10, ge=1, description="minimum samples per client (dirichlet)")
    shards_per_client: int = Field(
        2, ge=1, description="label-sorted shards per client (partition = shards)"
    )
    size_sigma: float = Field(1.0, gt=0, description="lognormal sigma (partition = size_skew)")
    synthetic: SyntheticCfg = Field(default_factory=SyntheticCfg)


class ModelCfg(Strict):
    name: str = Field("cnn", description="see `fedsim list models`")
    args: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments of the model builder"
    )


class ClientsCfg(Strict):
    count: int = Field(20, gt=0, description="population size")
    per_round: int = Field(5, gt=0, description="clients aggregated per round (K)")


class TrainCfg(Strict):
    local_epochs: int = Field(1, ge=1, description="local epochs per round")
    local_steps: int | None = Field(None, ge=1, description="if set, overrides local_epochs")
    batch_size: int = Field(32, ge=1, description="local mini-batch size")
    optimizer: Literal["sgd", "adam"] = Field("sgd", description="local optimizer")
    lr: float = Field(0.05, gt=0, description="local learning rate")
    momentum: float = Field(0.0, ge=0, lt=1, description="SGD momentum (reset every round)")
    weight_decay: float = Field(0.0, ge=0, description="L2 weight decay")


class AlgorithmCfg(BaseModel):
    """`name` plus the algorithm's own options, validated by that algorithm's schema."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(
        "fedavg", description="see `fedsim list algorithms`; other keys are its options"
    )


class CodecCfg(Strict):
    uplink: str = Field("fp32", description="codec spec for client updates (docs/codecs.md)")
    downlink: str = Field("fp32", description="codec spec for the model sent to clients")


class DeviceMix(Strict):
    profile: str = Field("laptop-wifi", description="device profile, see `fedsim list devices`")
    share: float = Field(1.0, gt=0, description="relative share of the population")
    up: Rate | None = Field(None, description="override the profile's uplink")
    down: Rate | None = Field(None, description="override the profile's downlink")
    rtt: Duration | None = Field(None, description="override the profile's round-trip time")
    flops: Flops | None = Field(None, description="override the profile's training FLOP/s")
    loss: float | None = Field(
        None, ge=0, lt=1, description="override the packet loss rate (Mathis cap)"
    )
    jitter: Duration | None = Field(None, description="override latency jitter (std dev)")
    spread: float = Field(0.0, ge=0, description="lognormal sigma on rates and FLOP/s")
    power: dict[str, float] | None = Field(
        None,
        description="override power-model figures of this profile, e.g. {compute_w = 3.0} (docs/energy.md)",
    )


class AvailabilityCfg(Strict):
    model: Literal["always", "markov", "trace"] = Field("always", description="availability model")
    mean_on: Period = Field(3600.0, description="mean online period (markov), > 0")
    mean_off: Period = Field(600.0, description="mean offline period (markov), > 0")
    trace: str | None = Field(
        None,
        description="CSV client_id,start,end or JSON {client: [[start,end],...]} (trace; relative to the scenario file)",
    )


class NetworkCfg(Strict):
    server_up: Rate = Field(1e9, description="server incoming capacity (shared by uploads)")
    server_down: Rate = Field(1e9, description="server outgoing capacity (shared by downloads)")
    bandwidth_factor: float = Field(
        DEFAULT_BANDWIDTH_FACTOR,
        gt=0,
        le=1,
        description="usable fraction of nominal bandwidth (TCP payload per MTU-1500 frame, "
        "measured on real TCP; SimGrid uses 0.97; docs/network-model.md)",
    )
    latency_factor: float = Field(
        DEFAULT_LATENCY_FACTOR,
        ge=1,
        description="latency multiplier for TCP slow start (SimGrid uses 13.01; see docs/network-model.md)",
    )
    message_overhead: Duration = Field(
        DEFAULT_MESSAGE_OVERHEAD_S,
        description="fixed delay every message pays beyond its bytes and the one-way latency, "
        "both directions (measured on real TCP; docs/network-model.md)",
    )
    devices: list[DeviceMix] = Field(
        default_factory=lambda: [DeviceMix()], min_length=1, description="device mix"
    )
    availability: AvailabilityCfg = Field(
        default_factory=AvailabilityCfg, description="when devices are online"
    )


class ServerCfg(Strict):
    mode: Literal["sync", "async"] = Field(
        "sync", description="synchronous rounds or FedBuff buffered async"
    )
    overcommit: float = Field(
        1.0, ge=1.0, description="select ceil(K*overcommit), accept the first K"
    )
    deadline: Duration | None = Field(None, description="round deadline; later uploads are dropped")
    # FedBuff (asynchronous buffered aggregation)
    concurrency: int = Field(10, ge=1, description="async: clients training at once")
    buffer_size: int = Field(5, ge=1, description="async: updates per aggregation")
    staleness: Literal["constant", "polynomial", "hinge"] = Field(
        "polynomial", description="async: staleness weighting"
    )
    staleness_exponent: float = Field(0.5, ge=0, description="async: a in (1+s)^-a")
    server_lr: float = Field(
        1.0, gt=0, description="server step size η_g on the mean update (sync rounds and FedBuff)"
    )


class EvalCfg(Strict):
    every: int = Field(1, ge=1, description="evaluate every N rounds (and the last)")
    batch_size: int = Field(
        128,
        ge=1,
        description="evaluation batch size (the accuracy does not depend on it; a small batch's activations stay in cache: benchmarks/README.md)",
    )
    target_accuracy: float | None = Field(
        None,
        gt=0,
        le=1,
        description="accuracy for the time/bytes/bits-to-target columns of comparisons",
    )
    ptq: list[str] = Field(
        default_factory=list,
        description='post-training quantization of the final model, e.g. ["W8A8", "W4A4", "W2", "W2PT"] (PT: one weight scale per tensor; summary.json "ptq")',
    )


class RuntimeCfg(Strict):
    executor: Literal["zmq", "ray"] = Field(
        "zmq",
        description='who runs clients: "zmq" (in process or ZeroMQ workers, see transport) or "ray" (Ray actors, docs/scale-out.md)',
    )
    transport: Literal["inproc", "ipc", "tcp"] = Field(
        "inproc", description="ZeroMQ transport between coordinator and clients"
    )
    workers: int = Field(
        0, ge=0, description="worker processes to spawn (ipc/tcp), or Ray actors (executor = ray)"
    )
    torch_threads: int = Field(
        1, ge=1, description="torch threads per client process (fixed for determinism)"
    )
    device: str = Field(
        "cpu",
        pattern=r"^(auto|cpu|cuda(:\d+)?)$",
        description='where models train and evaluate: "cpu", "cuda", "cuda:N" or "auto" (cuda if available); workers get one GPU each (docs/scale-out.md)',
    )
    batch_clients: int = Field(
        1,
        ge=1,
        description="train up to N clients of a round together (1 = one at a time; docs/scenarios.md, Batched clients)",
    )
    batch_kernels: Literal["auto", "vmap", "per_client"] = Field(
        "auto",
        description='how batched clients compute: "vmap" (stacked, one vectorised computation), "per_client" (each client\'s own kernels, in lockstep), "auto" (per_client on the CPU, vmap on a GPU)',
    )
    checkpoint_every: int = Field(0, ge=0, description="checkpoint every N rounds (0 = off)")
    state_store: Literal["memory", "disk", "spill"] = Field(
        "memory",
        description='where per-client state (error-feedback residuals) lives between rounds: "memory", "disk" (one file per client) or "spill" (in memory up to state_memory, the least recently used clients on disk)',
    )
    state_memory: Bytes = Field(
        256e6,
        description="state_store = spill: bytes of client state kept in memory before the least recently used spills to disk",
    )
    state_dir: str | None = Field(
        None,
        description="folder for state_store = disk or spill (default: a temporary one; relative to the scenario file)",
    )
    endpoint: str | None = Field(
        None,
        description='address the coordinator binds, e.g. "tcp://0.0.0.0:5555" (default: private ipc path or random localhost port)',
    )
    heartbeat_interval: Duration = Field(
        1.0, description="seconds between heartbeats (workers and coordinator)"
    )
    worker_timeout: Duration = Field(
        10.0, description="a worker silent this long is lost; its work is re-run elsewhere"
    )
    worker_wait: Duration = Field(
        60.0, description="with no worker left, wait this long for one to join, then stop"
    )
    curve_keys: str | None = Field(
        None,
        description="DIR/server of `fedsim keys generate DIR` (relative to the scenario file): CURVE-encrypt and authenticate workers",
    )
    ray_address: str | None = Field(
        None,
        description='Ray cluster to join: "auto", "HOST:6379" or "ray://HOST:10001" (default: a local Ray instance for the run)',
    )
    ray_num_cpus_per_client: float = Field(
        1.0, gt=0, description="CPUs each Ray client actor reserves"
    )
    ray_num_gpus_per_client: float = Field(
        0.0, ge=0, description="GPUs each Ray client actor reserves (fractions allowed)"
    )


# A variant's name is a folder inside --out: no separators, no leading dot (so never `.` or
# `..`), nothing a shell or another OS would read differently.
VARIANT_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"


class Variant(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(max_length=128, description="folder name inside --out")

    @field_validator("name")
    @classmethod
    def _folder_name(cls, v: str) -> str:
        if not re.fullmatch(VARIANT_NAME, v):
            raise ValueError(
                "a variant name is a folder inside --out: a letter or digit, then letters, "
                "digits, '_', '.' or '-'"
            )
        return v


class Scenario(Strict):
    name: str = Field("scenario", description="name used in outputs and reports")
    description: str = Field("", description="free text")
    seed: int = Field(
        0,
        ge=0,
        description="seeds everything: init, partitions, selection, training, codecs, network",
    )
    seeds: list[int] | None = Field(
        None,
        min_length=1,
        description="repeat the run (and each variant) once per seed into OUT/seed-N/ (OUT/VARIANT/seed-N/); "
        "the comparison gives mean ± std over the seeds (`fedsim run --seeds 0,1,2`)",
    )
    repeats: int | None = Field(
        None, ge=1, description="shorthand for seeds = [seed, seed + 1, ..., seed + repeats - 1]"
    )
    rounds: int = Field(10, gt=0, description="number of rounds (sync) or aggregations (async)")
    data: DataCfg = Field(default_factory=DataCfg)
    model: ModelCfg = Field(default_factory=ModelCfg)
    clients: ClientsCfg = Field(default_factory=ClientsCfg)
    train: TrainCfg = Field(default_factory=TrainCfg)
    algorithm: AlgorithmCfg = Field(default_factory=AlgorithmCfg)
    codec: CodecCfg = Field(default_factory=CodecCfg)
    network: NetworkCfg = Field(default_factory=NetworkCfg)
    server: ServerCfg = Field(default_factory=ServerCfg)
    eval: EvalCfg = Field(default_factory=EvalCfg)
    runtime: RuntimeCfg = Field(default_factory=RuntimeCfg)
    variants: list[Variant] = Field(
        default_factory=list, description="[[variants]]: name + keys deep-merged over this file"
    )

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, v: list[int] | None) -> list[int] | None:
        if v is None:
            return v
        if min(v) < 0:
            raise ValueError("every seed must be >= 0")
        twice = next((s for i, s in enumerate(v) if s in v[:i]), None)
        if twice is not None:
            raise ValueError(f"seed {twice} is listed twice (each seed runs into its own folder)")
        return v

    def seed_list(self) -> list[int] | None:
        """The seeds to repeat the run with (`seeds`, or `repeats` from `seed`); None: one run."""
        if self.seeds is not None:
            return list(self.seeds)
        if self.repeats is not None:
            return [self.seed + i for i in range(self.repeats)]
        return None
