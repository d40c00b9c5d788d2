"""Checks that need the registries: names of models, datasets, algorithms, codecs, devices.

Kept apart from the schema so `fedsim.scenario` itself stays free of torch.
"""

from __future__ import annotations

from typing import Any

from fedsim.errors import ScenarioError


def _fail(file: str | None, field: str, msg: str) -> None:
    raise ScenarioError(msg, file=file, field=field)


def check_scenario(scenario: Any, *, file: str | None = None) -> None:
    from fedsim.algorithms import algorithm_options
    from fedsim.data.registry import get_dataset_loader
    from fedsim.models.registry import get_model_builder

    sc = scenario
    if sc.clients.per_round > sc.clients.count:
        _fail(
            file,
            "clients.per_round",
            f"{sc.clients.per_round} exceeds clients.count ({sc.clients.count})",
        )
    for resolve, field, name in (
        (get_model_builder, "model.name", sc.model.name),
        (get_dataset_loader, "data.dataset", sc.data.dataset),
    ):
        try:
            resolve(name)  # built-in, entry point or import path (fedsim/plugins.py)
        except ScenarioError as e:
            _fail(file, e.field or field, e.message)
    try:
        algorithm_options(sc)
    except ScenarioError as e:
        _fail(file, e.field or "algorithm", e.message)
    try:
        from fedsim.codecs.pipeline import parse_codec
    except ImportError:  # codec library not built yet
        parse_codec = None
    if parse_codec is not None:
        for direction in ("uplink", "downlink"):
            spec = getattr(sc.codec, direction)
            try:
                parse_codec(spec)
            except ValueError as e:
                _fail(file, f"codec.{direction}", str(e))
    if parse_codec is not None:
        from fedsim.scenario.composition import composition_refusal

        refusal = composition_refusal(sc)
        if refusal is not None:
            _fail(file, *refusal)
    try:
        from fedsim.network.devices import CATALOG
    except ImportError:
        CATALOG = None
    if CATALOG is not None:
        for i, dev in enumerate(sc.network.devices):
            if dev.profile not in CATALOG:
                _fail(
                    file,
                    f"network.devices[{i}].profile",
                    f"unknown device profile {dev.profile!r} (known: {', '.join(sorted(CATALOG))})",
                )
    if sc.eval.ptq:
        from fedsim.eval.ptq import parse_config

        for i, cfg in enumerate(sc.eval.ptq):
            try:
                parse_config(cfg)
            except ValueError as e:
                _fail(file, f"eval.ptq[{i}]", str(e))
    av = sc.network.availability
    if av.model == "trace":
        from pathlib import Path

        if not av.trace:
            _fail(
                file,
                "network.availability.trace",
                "model = 'trace' needs trace = 'path/to/file.csv|json'",
            )
        elif not Path(av.trace).exists():
            _fail(file, "network.availability.trace", f"trace file {av.trace} not found")
        else:
            _check_trace(av.trace, sc.clients.count, file)
    if sc.runtime.transport != "inproc" and sc.runtime.workers == 0 and not sc.runtime.endpoint:
        _fail(
            file,
            "runtime.workers",
            f"transport {sc.runtime.transport!r} needs workers >= 1 (or runtime.endpoint for workers started by hand)",
        )
    if sc.runtime.executor == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            _fail(file, "runtime.executor", 'Ray is not installed (pip install "fedsim[ray]")')
    if sc.runtime.endpoint and not sc.runtime.endpoint.startswith(f"{sc.runtime.transport}://"):
        _fail(
            file,
            "runtime.endpoint",
            f"{sc.runtime.endpoint!r} does not match transport {sc.runtime.transport!r}",
        )
    _check_runtime(sc, file)
    if sc.runtime.curve_keys:
        from fedsim.network import curve

        try:  # the coordinator's folder: DIR/server of `fedsim keys generate DIR`
            curve.server_keys(sc.runtime.curve_keys)
        except curve.KeyFolderError as e:
            _fail(file, "runtime.curve_keys", str(e))
    _check_model_and_memory(sc, file)


def _check_runtime(sc: Any, file: str | None) -> None:
    from fedsim.runtime.device import device_problem, wants_cuda
    from fedsim.scenario.endpoint import endpoint_problem

    rt = sc.runtime
    problem = device_problem(rt.device)
    if problem:
        _fail(file, "runtime.device", problem)
    if rt.executor == "ray" and rt.ray_num_gpus_per_client == 0 and wants_cuda(rt.device):
        _fail(
            file,
            "runtime.ray_num_gpus_per_client",
            f"device {rt.device!r} on Ray needs a GPU share per actor (e.g. 0.25); "
            "with 0 Ray hides every GPU from the actors",
        )
    if rt.endpoint:
        problem = endpoint_problem(rt.endpoint, bind=True)
        if problem:
            _fail(file, "runtime.endpoint", problem)
    if rt.worker_timeout <= 2 * rt.heartbeat_interval:
        _fail(
            file,
            "runtime.worker_timeout",
            f"{rt.worker_timeout:g} s must exceed 2 x runtime.heartbeat_interval "
            f"({2 * rt.heartbeat_interval:g} s), or live workers are declared lost",
        )


def _check_trace(path: str, count: int, file: str | None) -> None:
    """The trace loads, and names only clients of the population (ids 0 .. count-1): a trace
    about other ids would leave every client offline and the run training nobody."""
    from fedsim.network.availability import load_trace

    field = "network.availability.trace"
    try:
        trace = load_trace(path)
    except OSError as e:
        _fail(file, field, f"{path}: {e.strerror or e}")
    except (ValueError, TypeError) as e:  # JSONDecodeError and UnicodeDecodeError too
        msg = " ".join(str(e).split())
        _fail(file, field, msg if path in msg else f"{path}: {msg}")
    outside = [d for d in trace.devices if not 0 <= d < count]
    if outside:
        _fail(
            file,
            field,
            f"{path} names client {outside[0]} ({len(outside)} ids in all) outside the "
            f"population 0..{count - 1} (clients.count = {count})",
        )
    if not trace.devices:
        _fail(file, field, f"{path} lists no client")


def _check_model_and_memory(sc: Any, file: str | None) -> None:
    """Build the model on the meta device (bad model.args surface here, with the file) and
    refuse a run that cannot fit in memory, before anything is allocated."""
    from fedsim.errors import DataError
    from fedsim.scenario.memory import memory_problem

    try:
        problem = memory_problem(sc)
    except ScenarioError as e:
        _fail(file, e.field or "model", e.message)
    except DataError as e:
        raise ScenarioError(str(e), file=file) from None
    if problem:
        _fail(file, *problem)
