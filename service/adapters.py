"""Which LoRA adapters the engine has loaded, and loading them once, on demand."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from service.engine.client import EngineClient, EngineError

logger = logging.getLogger(__name__)


class AdapterLoadError(Exception):
    pass


class AdapterRegistry:
    """Adapters are named by their immutable model id, so a loaded name always means the same weights.

    A lock per name makes concurrent first requests for one adapter cause a single load.
    """

    def __init__(self, engine: EngineClient) -> None:
        self.engine = engine
        self._loaded: set[str] = set()
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def is_loaded(self, name: str) -> bool:
        return name in self._loaded

    async def ensure_loaded(self, name: str, path: str) -> None:
        if name in self._loaded:
            return
        async with self._locks[name]:
            if name in self._loaded:
                return
            try:
                await self.engine.load_adapter(name, path)
            except EngineError as exc:
                if not _already_loaded(exc):
                    raise AdapterLoadError(f"the engine could not load adapter '{name}': {exc.body}") from exc
            self._loaded.add(name)
            logger.info("Loaded adapter %s from %s", name, path)

    async def unload(self, name: str) -> None:
        """Unload if loaded; an engine that no longer knows the adapter (it restarted) is fine."""
        async with self._locks[name]:
            if name not in self._loaded:
                return
            try:
                await self.engine.unload_adapter(name)
            except EngineError as exc:
                if exc.status_code != 404:
                    raise
            self._loaded.discard(name)


def _already_loaded(exc: EngineError) -> bool:
    return exc.status_code == 400 and "already been loaded" in str(exc.body)
