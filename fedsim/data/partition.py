"""Partitioners: split a label array into per-client index arrays. Plain numpy, seeded.

Every partitioner takes the labels, the number of clients and a ``np.random.Generator`` and
returns ``n_clients`` disjoint index arrays, each sorted. ``rng`` is required (an int
seed works too): partitions are part of a run's reproducible state. iid, dirichlet and shards cover
every sample; size_skew does too.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from fedsim.errors import DataError

Partition = list[np.ndarray]


def iid(
    labels: np.ndarray, n_clients: int, rng: np.random.Generator | int | None = None
) -> Partition:
    """IID: a random permutation cut into n_clients parts of equal size (±1)."""
    _check_clients(labels, n_clients)
    parts = np.array_split(_generator(rng).permutation(len(labels)), n_clients)
    return [np.sort(p) for p in parts]


def dirichlet(
    labels: np.ndarray,
    n_clients: int,
    alpha: float = 0.5,
    min_size: int = 10,
    rng: np.random.Generator | int | None = None,
    max_tries: int = 1000,
) -> Partition:
    """Label skew: each class split over clients by Dirichlet(alpha) proportions.

    Follows the NIID-Bench partitioner (Li et al., ICDE 2022, ``partition_data`` "noniid-
    labeldir"): a client already holding N/n_clients samples gets no more of later classes,
    and the whole draw is repeated until every client has at least ``min_size`` samples.
    Smaller alpha gives more skew.
    """
    _check_clients(labels, n_clients)
    rng = _generator(rng)
    if alpha <= 0:
        raise ValueError(f"data.alpha: {alpha} must be > 0")
    if min_size * n_clients > len(labels):
        raise ValueError(
            f"data.min_size: {min_size} samples for each of {n_clients} clients needs "
            f"{min_size * n_clients}, but there are only {len(labels)}"
        )
    n, cap = len(labels), len(labels) / n_clients
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
        sizes = np.zeros(n_clients, dtype=np.int64)
        for c in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == c))
            p = rng.dirichlet(np.full(n_clients, alpha))
            open_p = p * (sizes < cap)
            p = open_p / open_p.sum() if open_p.sum() > 0 else p / p.sum()
            cuts = (np.cumsum(p) * len(members)).astype(np.int64)[:-1]
            for client, chunk in enumerate(np.split(members, cuts)):
                parts[client].append(chunk)
                sizes[client] += len(chunk)
        if sizes.min() >= min_size:
            return [np.sort(np.concatenate(p)) for p in parts]
    raise ValueError(
        f"data.min_size: no Dirichlet(alpha={alpha}) draw in {max_tries} gave all "
        f"{n_clients} clients >= {min_size} of {n} samples; lower min_size or raise alpha"
    )


def shards(
    labels: np.ndarray,
    n_clients: int,
    shards_per_client: int = 2,
    rng: np.random.Generator | int | None = None,
) -> Partition:
    """Pathological non-IID (McMahan et al. 2017): sort by label, cut into shards, k per client.

    Samples are shuffled within each label before sorting, so a shard is a random subset
    of (at most two neighbouring) labels; n_clients * k shards of equal size (±1).
    """
    _check_clients(labels, n_clients)
    rng = _generator(rng)
    n_shards = n_clients * shards_per_client
    if shards_per_client < 1 or n_shards > len(labels):
        raise ValueError(
            f"data.shards_per_client: {shards_per_client} shards for each of {n_clients} "
            f"clients must be >= 1 and leave >= 1 sample per shard ({len(labels)} samples)"
        )
    shuffled = rng.permutation(len(labels))
    by_label = shuffled[np.argsort(labels[shuffled], kind="stable")]
    pieces = np.array_split(by_label, n_shards)
    owner = rng.permutation(n_shards).reshape(n_clients, shards_per_client)
    return [np.sort(np.concatenate([pieces[s] for s in row])) for row in owner]


def size_skew(
    labels: np.ndarray,
    n_clients: int,
    sigma: float = 1.0,
    rng: np.random.Generator | int | None = None,
    min_size: int = 1,
) -> Partition:
    """Quantity skew: IID labels, client sizes proportional to LogNormal(0, sigma) draws.

    Every client gets at least ``min_size`` samples; the rest are shared out by the lognormal
    proportions (largest remainders get the leftover samples), so all samples are used.
    """
    _check_clients(labels, n_clients)
    rng = _generator(rng)
    if sigma < 0:
        raise ValueError(f"data.size_sigma: {sigma} must be >= 0")
    spare = len(labels) - min_size * n_clients
    if min_size < 0 or spare < 0:
        raise ValueError(
            f"data.min_size: {min_size} for each of {n_clients} clients exceeds "
            f"{len(labels)} samples"
        )
    weights = rng.lognormal(0.0, sigma, n_clients)
    share = weights / weights.sum() * spare
    sizes = np.floor(share).astype(np.int64)
    leftover = spare - int(sizes.sum())
    sizes[np.argsort(sizes - share, kind="stable")[:leftover]] += 1
    sizes += min_size
    cuts = np.cumsum(sizes)[:-1]
    return [np.sort(p) for p in np.split(rng.permutation(len(labels)), cuts)]


def natural(
    labels: np.ndarray,
    n_clients: int,
    groups: np.ndarray | None = None,
    rng: np.random.Generator | int | None = None,
) -> Partition:
    """Natural: one client per client id in the data (LEAF-style writers, users, devices).

    ``groups`` holds each sample's client id (a csv client column, an npz client array,
    image-folder client folders); client i gets the samples of the i-th id in sorted order,
    so there must be exactly ``n_clients`` ids. ``rng`` is not used: nothing is drawn.
    """
    _check_clients(labels, n_clients)
    if groups is None:
        raise ValueError(
            "data.partition: natural needs a client id per sample in the data (a csv client "
            "column, an npz client array or image-folder client folders)"
        )
    ids, inverse, counts = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    if len(ids) != n_clients:
        raise ValueError(
            f"clients.count: the data has {len(ids)} client ids; partition = natural needs "
            f"clients.count = {len(ids)} (got {n_clients})"
        )
    order = np.argsort(inverse.ravel(), kind="stable")
    return [np.sort(p) for p in np.split(order, np.cumsum(counts)[:-1])]


# name -> partitioner; the first docstring line is its ``fedsim list`` entry.
PARTITIONERS: dict[str, Callable[..., Partition]] = {
    "iid": iid,
    "dirichlet": dirichlet,
    "shards": shards,
    "size_skew": size_skew,
    "natural": natural,
}

_POSITIONAL = ("labels", "n_clients", "rng")


def partition(
    name: str, labels: np.ndarray, n_clients: int, rng: np.random.Generator, **options: Any
) -> Partition:
    """Run partitioner ``name`` with its ``options``; bad names or values raise DataError."""
    fn = PARTITIONERS.get(name)
    if fn is None:
        raise DataError(
            f"data.partition: unknown partitioner {name!r}; choose one of {', '.join(PARTITIONERS)}"
        )
    own = [p for p in inspect.signature(fn).parameters if p not in _POSITIONAL]
    for key in options:
        if key not in own:
            takes = f"its options are {', '.join(own)}" if own else "it takes no options"
            raise DataError(f"data.{key}: partitioner {name} has no option {key!r}; {takes}")
    try:
        return fn(np.asarray(labels), n_clients, rng=rng, **options)
    except ValueError as err:
        raise DataError(str(err)) from err


def describe_partitioners() -> list[tuple[str, str]]:
    """(name, one-line description) for each registered partitioner, for ``fedsim list``."""
    return [(name, (inspect.getdoc(fn) or "").splitlines()[0]) for name, fn in PARTITIONERS.items()]


def _check_clients(labels: np.ndarray, n_clients: int) -> None:
    if n_clients < 1 or n_clients > len(labels):
        raise ValueError(
            f"clients.count: {n_clients} clients must be between 1 and the {len(labels)} samples"
        )


def _generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    """Partitions must be reproducible, so an unseeded default is refused."""
    if rng is None:
        raise TypeError("a partitioner needs rng: a np.random.Generator or an int seed")
    return np.random.default_rng(rng)
