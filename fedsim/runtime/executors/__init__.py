"""Client execution: one interface, several implementations (DESIGN.md §6).

- `InprocExecutor` (inproc.py): a client actor in the coordinator's own process, reached
  through ZeroMQ's inproc transport (messages are still encoded and really sent).
- `ZmqWorkerExecutor` (zmq.py): worker processes over ipc/tcp.
- `RayExecutor` (ray.py): Ray actors, locally or on a cluster.

All three share `base.WorkerPool` (queue, credit, loss, re-dispatch, result validation)
and the client side in `actor.py`.
"""

from __future__ import annotations

from typing import Any

from fedsim.runtime.executors.base import Executor
from fedsim.runtime.executors.inproc import InprocExecutor

__all__ = ["Executor", "InprocExecutor", "make_executor"]


def make_executor(
    scenario: Any, runner_factory: Any, *, scenario_toml: str, on_event: Any
) -> Executor:
    rt = scenario.runtime
    if rt.executor == "ray":
        from fedsim.runtime.executors.ray import RayExecutor

        return RayExecutor(scenario, scenario_toml, on_event=on_event)
    if rt.transport == "inproc":
        return InprocExecutor(runner_factory(), scenario_toml=scenario_toml, on_event=on_event)
    from fedsim.runtime.executors.zmq import ZmqWorkerExecutor

    return ZmqWorkerExecutor(scenario, scenario_toml, on_event=on_event)
