"""One engine of a base model: its client, the adapters it holds, the requests it runs, and whether
it is in rotation. A managed replica's keeper (a local process or a Ray actor) restarts its engine;
a replica by URL is watched here. Either leaves rotation while it fails its health checks, or
as soon as a request cannot reach it (`suspect`), and rejoins once it answers again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from service.engine.adapters import AdapterRegistry
from service.engine.client import EngineClient

logger = logging.getLogger(__name__)


class EngineKeeper(Protocol):
    """What keeps a managed engine up: a local process (process.ManagedEngine) or a Ray actor
    (ray_engine.RayEngine)."""

    async def supervise(self, client: EngineClient, on_restart: Callable[[], None]) -> None: ...
    async def stop(self) -> None: ...


@dataclass(eq=False)
class Replica:
    key: str  # what routing hashes: the URL of an engine by URL, "managed-N" for ours
    client: EngineClient
    adapters: AdapterRegistry
    managed: EngineKeeper | None = None
    in_flight: int = 0  # requests the engine is working on (held by ServingLease)
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def available(self) -> bool:
        return self.client.available

    def suspect(self) -> None:
        """A request could not reach the engine: out of rotation until a health check passes."""
        if self.client.available:
            logger.warning("Engine replica %s unreachable: out of rotation", self.key)
        self.client.available = False

    def watch(self, interval_s: float) -> None:
        if self.managed is not None:
            work = self.managed.supervise(self.client, self.adapters.forget_all)
        else:
            work = _watch_remote(self, interval_s)
        self.watcher = asyncio.create_task(work)

    async def stop(self) -> None:
        if self.watcher:
            self.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.watcher
        await self.client.close()
        if self.managed:
            await self.managed.stop()


async def _watch_remote(replica: Replica, interval_s: float) -> None:
    """An engine someone else runs: we cannot restart it, only stop and resume sending to it."""
    while True:
        await asyncio.sleep(interval_s)
        healthy = await replica.client.is_healthy()
        if healthy and not replica.available:
            # It may have restarted empty; adapters it still has load again as "already loaded".
            replica.adapters.forget_all()
            replica.client.available = True
            logger.info("Engine replica %s answers again: back in rotation", replica.key)
        elif not healthy and replica.available:
            replica.client.available = False
            logger.warning("Engine replica %s failed its health check: out of rotation", replica.key)
