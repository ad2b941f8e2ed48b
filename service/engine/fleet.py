"""The base models this server serves, each on one or more vLLM engine replicas (managed, or by
URL: service/engine/models_file.py), and which replica serves what (service/engine/routing.py)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from service.config import Settings
from service.engine.adapter_cache import AdapterCache
from service.engine.adapters import AdapterRegistry
from service.engine.client import EngineClient
from service.engine.models_file import BaseModelConfig
from service.engine.process import DeviceShare, ManagedEngine
from service.engine.replica import Replica
from service.engine.routing import Router, rendezvous_order
from service.errors import EngineNotReachable, EngineUnreachable


@dataclass
class ServedBase:
    """One base model: where its weights are, and the engines that serve it and its adapters."""

    name: str
    model_path: Path
    replicas: list[Replica]
    router: Router

    def choose(self, adapter: str | None, tried: frozenset[Replica] = frozenset()) -> Replica:
        """The replica for a request (adapter None: the base model), among those in rotation and
        not yet `tried`; EngineUnreachable when none is left."""
        candidates = [r for r in self.replicas if r.available and r not in tried]
        if not candidates:
            raise EngineUnreachable(f"no engine of {self.name} is available")
        return self.router.choose(candidates, adapter)

    async def preload(self, adapter: str, location: str) -> None:
        """Load an adapter where its first request will go (a finished job answers at once)."""
        candidates = [r for r in self.replicas if r.available]
        if not candidates:
            raise EngineUnreachable(f"no engine of {self.name} is available")
        await rendezvous_order(adapter, candidates)[0].adapters.ensure_loaded(adapter, location)

    async def unload_everywhere(self, adapter: str) -> None:
        """Unload an adapter from every replica that holds it (its model is gone)."""
        for replica in self.replicas:
            with contextlib.suppress(EngineUnreachable):  # a restarting engine has forgotten it
                await replica.adapters.unload(adapter)

    async def healthy(self) -> bool:
        """At least one replica answers."""
        checks = await asyncio.gather(*(r.client.is_healthy() for r in self.replicas))
        return any(checks)


class EngineFleet:
    def __init__(self, bases: list[ServedBase]) -> None:
        self._bases = {base.name: base for base in bases}

    @property
    def names(self) -> list[str]:
        return list(self._bases)

    def get(self, name: str) -> ServedBase:
        return self._bases[name]

    def __iter__(self) -> Iterator[ServedBase]:
        return iter(self._bases.values())

    async def all_healthy(self) -> bool:
        checks = await asyncio.gather(*(base.healthy() for base in self))
        return all(checks)

    async def stop(self) -> None:
        """Stop every engine; one that fails to stop does not keep the others running."""
        async with contextlib.AsyncExitStack() as stack:
            for base in self:
                for replica in base.replicas:
                    stack.push_async_callback(replica.stop)


async def start_fleet(
    settings: Settings, configs: list[BaseModelConfig], paths: dict[str, Path], logs_dir: Path
) -> EngineFleet:
    """Start (or connect to) every replica of every base model, concurrently, and watch them.

    All or nothing: when one fails, those still starting are cancelled and those started are
    stopped before its error is raised, so no engine outlives a failed start-up."""
    router = Router(
        settings.engine_routing, settings.engine_route_load_factor, settings.engine_route_min_in_flight
    )
    starts: list[tuple[str, asyncio.Task[Replica]]] = []
    for index, config in enumerate(configs):
        for url in config.urls:
            starts.append((config.name, asyncio.create_task(_connect(settings, config, url))))
        for number in range(config.managed_replicas):
            log = logs_dir / _log_name(index, len(configs), number, config.managed_replicas)
            only = len(configs) == 1 and config.managed_replicas == 1
            port = settings.engine_port if only else None
            share = DeviceShare(number, config.managed_replicas)
            if settings.engine_placement == "ray":
                work = _start_on_ray(settings, config, paths[config.name], number)
            else:
                work = _start_managed(settings, config, paths[config.name], share, log, port)
            starts.append((config.name, asyncio.create_task(work)))
    tasks = [task for _, task in starts]
    try:
        replicas = list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, Replica):
                await outcome.stop()
        raise
    for replica in replicas:
        replica.watch(settings.engine_health_interval_s)
    return EngineFleet(
        [
            ServedBase(
                c.name,
                paths[c.name],
                [r for (name, _), r in zip(starts, replicas, strict=True) if name == c.name],
                router,
            )
            for c in configs
        ]
    )


def _log_name(index: int, bases: int, replica: int, replicas: int) -> str:
    return "engine" + (f"-{index}" if bases > 1 else "") + (f"-r{replica}" if replicas > 1 else "") + ".log"


async def _connect(settings: Settings, config: BaseModelConfig, url: str) -> Replica:
    """An engine already running at `url`, checked to answer and to take our key."""
    key = config.engine_api_key.get_secret_value() if config.engine_api_key else None
    client = EngineClient(url, key)
    try:
        if not await client.is_healthy():
            raise EngineNotReachable(f"no healthy vLLM engine at {url} for {config.name}")
        if not await client.accepts_key():
            raise EngineNotReachable(
                f"the vLLM engine at {url} for {config.name} refused our key (401): "
                "set OPENTUNE_ENGINE_API_KEY (or engine_api_key in the models file) to its --api-key"
            )
    except BaseException:
        await client.close()
        raise
    return Replica(url, client, _adapters(settings, client, config.name, url))


async def _start_managed(
    settings: Settings,
    config: BaseModelConfig,
    model_path: Path,
    share: DeviceShare,
    log: Path,
    port: int | None,
) -> Replica:
    """A vLLM process of our own; stopped again if its start fails or is cancelled."""
    managed = ManagedEngine(settings, model_path, log, served_name=config.name, port=port, share=share)
    client = EngineClient(managed.url)
    try:
        await managed.start(client)
    except BaseException:
        await managed.stop()
        await client.close()
        raise
    key = f"managed-{share.index}"
    return Replica(key, client, _adapters(settings, client, config.name, key), managed)


async def _start_on_ray(settings: Settings, config: BaseModelConfig, model_path: Path, index: int) -> Replica:
    """A replica on the Ray cluster: its actor found (or created) and its engine answering."""
    from service.engine.ray_engine import RayAdapterStage, RayEngine  # Ray only where it is used

    engine = RayEngine(settings, model_path, config.name, index)
    client = EngineClient("http://unplaced.invalid")  # pointed at the engine once Ray placed it
    try:
        await engine.start(client)
    except BaseException:
        await client.close()
        raise
    registry = AdapterRegistry(client, settings.engine_max_adapters, RayAdapterStage(engine), config.name)
    return Replica(engine.name, client, registry, engine)


def _adapters(settings: Settings, client: EngineClient, base_name: str, replica: str) -> AdapterRegistry:
    # A cache folder per replica: each is used by one registry, under its lock (adapter_cache.py).
    digest = hashlib.sha256(f"{base_name}\0{replica}".encode()).hexdigest()[:16]
    folder = settings.data_dir.resolve() / "cache" / "adapters" / digest
    cache = AdapterCache(folder, max_entries=4 * settings.engine_max_adapters)
    return AdapterRegistry(client, settings.engine_max_adapters, cache, base_name)
