"""A stand-in for the engine client's adapter calls (load, unload), for tests of what drives them:
the adapter registry, the catalog, the scheduler. It records every call and what is loaded."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from service.engine.adapters import AdapterRegistry
from service.engine.client import EngineClient
from service.engine.fleet import EngineFleet, ServedBase
from service.engine.replica import Replica
from service.engine.routing import Router
from service.errors import EngineRejected


@dataclass
class FakeEngine:
    """`refuse_load` / `refuse_unload` map a name to the engine's error answer for it."""

    calls: list[tuple[str, str]] = field(default_factory=list)
    refuse_load: dict[str, EngineRejected] = field(default_factory=dict)
    refuse_unload: dict[str, EngineRejected] = field(default_factory=dict)
    loaded: dict[str, str] = field(default_factory=dict)  # name -> path
    available: bool = True  # in rotation (as EngineClient.available)

    async def load_adapter(self, name: str, path: str) -> None:
        self.calls.append(("load", name))
        await asyncio.sleep(0.01)  # concurrent callers overlap here
        if name in self.refuse_load:
            raise self.refuse_load[name]
        self.loaded[name] = path

    async def unload_adapter(self, name: str) -> None:
        self.calls.append(("unload", name))
        if name in self.refuse_unload:
            raise self.refuse_unload[name]
        self.loaded.pop(name, None)

    def loads(self, name: str | None = None) -> int:
        return sum(1 for call, n in self.calls if call == "load" and name in (None, n))

    def unloads(self) -> list[str]:
        return [n for call, n in self.calls if call == "unload"]

    @property
    def client(self) -> EngineClient:
        """Itself, where an EngineClient is expected (only the adapter calls are used)."""
        return cast(EngineClient, self)


def one_replica(name: str, model_path: Path, client: EngineClient, adapters: AdapterRegistry) -> ServedBase:
    """A base model served by one engine."""
    return ServedBase(name, model_path, [Replica("only", client, adapters)], Router())


def fake_fleet(engine: FakeEngine, *bases: str, max_adapters: int = 4) -> EngineFleet:
    """Base models served by `engine` (their weights are never read)."""
    return EngineFleet(
        [one_replica(b, Path(b), engine.client, AdapterRegistry(engine.client, max_adapters)) for b in bases]
    )
