"""The composition rule (DESIGN.md §0): a combination of method, codec, schedule and executor
either works or is refused here, in one line naming the field — never run silently wrong."""

from __future__ import annotations

from typing import Any


def composition_refusal(scenario: Any) -> tuple[str, str] | None:
    """(field, why) for the first combination the runtime cannot honour, or None."""
    from fedsim.algorithms import build_algorithm
    from fedsim.codecs.error_feedback import ErrorFeedback
    from fedsim.codecs.pipeline import parse_codec

    sc = scenario
    algo = build_algorithm(sc)
    name = sc.algorithm.name
    if sc.server.mode == "async":
        why = algo.async_refusal()
        if why:
            return "server.mode", f"{name} cannot run asynchronously (FedBuff): {why}"
    for direction in ("uplink", "downlink"):
        spec = getattr(sc.codec, direction)
        if algo.owns_codec(direction) and parse_codec(spec).spec != "fp32":
            return (
                f"codec.{direction}",
                f"{name} chooses its own {direction} encoding; leave codec.{direction} = "
                f'"fp32" (got {spec!r})',
            )
    if sc.runtime.batch_clients > 1:
        from fedsim.runtime.batched import batching_refusal

        why = batching_refusal(sc, algo)
        if why:
            return "runtime.batch_clients", why
    if isinstance(parse_codec(sc.codec.downlink), ErrorFeedback) and algo.custom_downlink():
        return (
            "codec.downlink",
            f"{name} encodes its downlink itself; downlink error feedback needs the runtime's",
        )
    return None
