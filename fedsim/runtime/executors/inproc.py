"""The client actor in the coordinator's own process, reached through ZeroMQ's inproc
transport: messages are still encoded and really sent, through the same ROUTER, protocol,
worker pool and result validation as worker processes. Tasks run one after another, or
with `runtime.batch_clients` = N in groups of up to N trained together."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Callable
from typing import Any

import zmq

from fedsim.errors import RuntimeFailure
from fedsim.network import transport
from fedsim.runtime.client import ClientRunner
from fedsim.runtime.executors.actor import Fault, fault_for, serve
from fedsim.runtime.executors.zmq import RouterExecutor


class InprocExecutor(RouterExecutor):
    def __init__(
        self,
        runner: ClientRunner,
        *,
        scenario_toml: str = "",
        on_event: Callable[..., None] = lambda kind, **f: None,
        fault: Fault | None = None,
    ):
        super().__init__(
            scenario_toml,
            on_event,
            starve_wait=math.inf,
            group_size=runner.scenario.runtime.batch_clients,
        )
        self.runner = runner
        self.fault = fault if fault is not None else fault_for(0)
        self.endpoint = f"inproc://fedsim-{uuid.uuid4().hex}"
        self.dealer: Any = None
        self.actor: asyncio.Task | None = None
        self._closing = False

    async def start(self) -> None:
        router = self._open_router_for_groups()
        self.dealer = self.ctx.socket(zmq.DEALER)
        transport.configure_socket(self.dealer)
        router.bind(self.endpoint)
        self.dealer.connect(self.endpoint)
        self.actor = asyncio.ensure_future(serve(self.dealer, runner=self.runner, fault=self.fault))
        self.actor.add_done_callback(self._actor_stopped)
        self._background(self._pump())

    def _actor_stopped(self, actor: asyncio.Task) -> None:
        if self._closing:
            return
        exc = None if actor.cancelled() else actor.exception()
        self.pool.fail(RuntimeFailure(f"in-process client actor stopped: {exc!r}"))

    async def close(self) -> None:
        self._closing = True
        self._shutdown_workers()
        if self.actor is not None and not self.actor.done():
            if self.pool.workers:  # it said hello: give it time to hear goodbye
                await asyncio.wait([self.actor], timeout=5)
            self.actor.cancel()
            try:
                await self.actor
            except (asyncio.CancelledError, Exception):
                pass
        await self._stop_background()
        for s in (self.dealer, self.router):
            if s is not None:
                s.close(linger=0)
        self.ctx.term()
