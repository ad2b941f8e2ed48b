"""Which LoRA adapters the engine has loaded: loading on demand, once, and evicting the least
recently used beyond a cap.

Adapters are named by their immutable model id, so a loaded name always means the same weights.
A lock serialises loads and evictions (vLLM loads an adapter in milliseconds), so concurrent first
requests for one adapter cause a single load. An adapter serving a request is never evicted: the
engine may then hold more than the cap until those requests finish.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from typing import Protocol

from service.engine.client import EngineClient
from service.errors import AdapterLoadError, EngineRejected
from service.metrics import ADAPTER_EVICTIONS, ADAPTER_LOAD_SECONDS, ADAPTER_LOADS

logger = logging.getLogger(__name__)


class AdapterStage(Protocol):
    """Puts an adapter where the engine can read it: a local folder (adapter_cache.AdapterCache) or
    one on a Ray engine's node (ray_engine.RayAdapterStage). Blocking."""

    def local_path(self, location: str) -> str: ...


class AdapterRegistry:
    def __init__(
        self, engine: EngineClient, max_resident: int, cache: AdapterStage | None = None, base: str = ""
    ) -> None:
        """`cache`: where adapters in object storage are copied for the engine (None: every
        adapter location is a local folder). `base`: the base model, for metrics."""
        self.engine = engine
        self.base = base
        self.max_resident = max_resident
        self.cache = cache
        self._resident: OrderedDict[str, None] = OrderedDict()  # least recently used first
        self._in_use: Counter[str] = Counter()
        self._lock = asyncio.Lock()
        self.loads = 0  # adapters loaded into the engine since start (observability, tests)

    @property
    def resident(self) -> list[str]:
        return list(self._resident)

    async def ensure_loaded(self, name: str, location: str) -> None:
        """Load the adapter if the engine lacks it, and mark it most recently used."""
        async with self._lock:
            await self._load(name, location)
            await self._evict(keep=name)

    async def acquire(self, name: str, location: str) -> None:
        """Like ensure_loaded, and hold the adapter (not evictable) until `release(name)`."""
        async with self._lock:
            await self._load(name, location)
            self._in_use[name] += 1
            try:
                await self._evict(keep=name)
            except BaseException:
                self.release(name)  # the caller gets no hold to release
                raise

    def release(self, name: str) -> None:
        self._in_use[name] -= 1
        if self._in_use[name] <= 0:
            del self._in_use[name]

    async def unload(self, name: str) -> None:
        """Unload if loaded; an engine that no longer knows the adapter (it restarted) is fine."""
        async with self._lock:
            await self._unload(name)

    def forget_all(self) -> None:
        """The engine restarted empty: adapters come back on demand."""
        self._resident.clear()

    async def _load(self, name: str, location: str) -> None:
        if name in self._resident:
            self._resident.move_to_end(name)
            return
        started = time.perf_counter()
        outcome = "error"
        try:
            path = await self._local_path(name, location)
            try:
                await self.engine.load_adapter(name, path)
            except EngineRejected as exc:
                if not (exc.status_code == 400 and "already been loaded" in str(exc.body)):
                    raise AdapterLoadError(f"the engine could not load adapter '{name}': {exc.body}") from exc
            outcome = "ok"
        finally:
            ADAPTER_LOADS.labels(self.base, outcome).inc()
            ADAPTER_LOAD_SECONDS.labels(self.base).observe(time.perf_counter() - started)
        self._resident[name] = None
        self.loads += 1
        logger.info("Loaded adapter %s from %s", name, location)

    async def _local_path(self, name: str, location: str) -> str:
        if self.cache is None:
            return location
        try:
            return await asyncio.to_thread(self.cache.local_path, location)
        except Exception as exc:  # storage unreachable, or the adapter is gone from it
            raise AdapterLoadError(f"adapter '{name}' could not be copied from storage: {exc}") from exc

    async def _evict(self, keep: str) -> None:
        while len(self._resident) > self.max_resident:
            victim = next((n for n in self._resident if n != keep and not self._in_use[n]), None)
            if victim is None:
                return  # every other adapter is serving a request: over the cap until they finish
            await self._unload(victim)
            ADAPTER_EVICTIONS.labels(self.base).inc()
            logger.info("Evicted adapter %s (least recently used)", victim)

    async def _unload(self, name: str) -> None:
        if name not in self._resident:
            return
        try:
            await self.engine.unload_adapter(name)
        except EngineRejected as exc:
            if exc.status_code != 404:
                raise
        del self._resident[name]
