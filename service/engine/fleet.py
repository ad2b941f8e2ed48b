"""The base models this server serves, each with its own vLLM engine (managed, or by URL).

One base model comes from `--model` / `--served-model-name` / `--engine-url`; several from a
models file (`--models-file`, JSON or YAML):

    models:
      - name: qwen-0.5b                       # the name clients use
        model: Qwen/Qwen2.5-0.5B-Instruct     # hub id or local folder (the trainer loads it too)
      - name: llama-8b
        model: /models/llama-3.1-8b-instruct
        engine_url: http://10.0.0.5:8000      # a vLLM already running (with --enable-lora)
        engine_api_key: sk-engine-secret      # its --api-key (default: OPENTUNE_ENGINE_API_KEY)

Managed engines get a random key per start; an engine by URL should be started with `--api-key`
(or VLLM_API_KEY), since anyone who can reach an open one can list and load adapters.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, SecretStr

from service.config import Settings
from service.engine.adapter_cache import AdapterCache
from service.engine.adapters import AdapterRegistry
from service.engine.client import EngineClient
from service.engine.process import ManagedEngine
from service.errors import EngineNotReachable


class BaseModelConfig(BaseModel):
    name: str = Field(min_length=1)
    model: str = Field(min_length=1)
    engine_url: str | None = None
    engine_api_key: SecretStr | None = None


class ModelsFile(BaseModel):
    models: list[BaseModelConfig] = Field(min_length=1)


def configured_base_models(settings: Settings) -> list[BaseModelConfig]:
    if settings.models_file is None:
        return [
            BaseModelConfig(
                name=settings.model_name,
                model=settings.model,
                engine_url=settings.engine_url,
                engine_api_key=settings.engine_api_key,
            )
        ]
    loaded = ModelsFile.model_validate(yaml.safe_load(settings.models_file.read_text()))
    names = [m.name for m in loaded.models]
    if len(set(names)) != len(names):
        raise ValueError(f"{settings.models_file}: model names must be unique, got {names}")
    return [
        m.model_copy(update={"engine_api_key": m.engine_api_key or settings.engine_api_key})
        for m in loaded.models
    ]


@dataclass
class ServedBase:
    """One base model: where its weights are, and the engine that serves it and its adapters."""

    name: str
    model_path: Path
    client: EngineClient
    adapters: AdapterRegistry
    managed: ManagedEngine | None = None
    supervisor: asyncio.Task[None] | None = field(default=None, repr=False)


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
        checks = await asyncio.gather(*(base.client.is_healthy() for base in self))
        return all(checks)

    async def stop(self) -> None:
        """Stop every engine; one that fails to stop does not keep the others running."""
        async with contextlib.AsyncExitStack() as stack:
            for base in self:
                stack.push_async_callback(_stop_base, base)


async def _stop_base(base: ServedBase) -> None:
    if base.supervisor:
        base.supervisor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await base.supervisor
    await base.client.close()
    if base.managed:
        await base.managed.stop()


async def start_fleet(
    settings: Settings, configs: list[BaseModelConfig], paths: dict[str, Path], logs_dir: Path
) -> EngineFleet:
    """Start (or connect to) every base model's engine, concurrently; supervise the managed ones.

    All or nothing: when one fails, those still starting are cancelled and those started are
    stopped before its error is raised, so no engine outlives a failed start-up."""

    async def start(index: int, config: BaseModelConfig) -> ServedBase:
        if config.engine_url:
            return await _connect(settings, config, paths[config.name])
        log = logs_dir / ("engine.log" if len(configs) == 1 else f"engine-{index}.log")
        port = settings.engine_port if len(configs) == 1 else None
        return await _start_managed(settings, config, paths[config.name], log, port)

    tasks = [asyncio.create_task(start(i, c)) for i, c in enumerate(configs)]
    try:
        return EngineFleet(list(await asyncio.gather(*tasks)))
    except BaseException:
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        await EngineFleet([o for o in outcomes if isinstance(o, ServedBase)]).stop()
        raise


async def _connect(settings: Settings, config: BaseModelConfig, model_path: Path) -> ServedBase:
    """An engine already running at `config.engine_url`, checked to answer and to take our key."""
    assert config.engine_url
    key = config.engine_api_key.get_secret_value() if config.engine_api_key else None
    client = EngineClient(config.engine_url, key)
    try:
        if not await client.is_healthy():
            raise EngineNotReachable(f"no healthy vLLM engine at {config.engine_url} for {config.name}")
        if not await client.accepts_key():
            raise EngineNotReachable(
                f"the vLLM engine at {config.engine_url} for {config.name} refused our key (401): "
                "set OPENTUNE_ENGINE_API_KEY (or engine_api_key in the models file) to its --api-key"
            )
    except BaseException:
        await client.close()
        raise
    return ServedBase(config.name, model_path, client, _adapters(settings, client, config.name))


async def _start_managed(
    settings: Settings, config: BaseModelConfig, model_path: Path, log: Path, port: int | None
) -> ServedBase:
    """A vLLM process of our own, supervised; stopped again if its start fails or is cancelled."""
    managed = ManagedEngine(settings, model_path, log, served_name=config.name, port=port)
    client = EngineClient(managed.url)
    try:
        await managed.start(client)
    except BaseException:
        await managed.stop()
        await client.close()
        raise
    adapters = _adapters(settings, client, config.name)
    base = ServedBase(config.name, model_path, client, adapters, managed)
    base.supervisor = asyncio.create_task(managed.supervise(client, adapters.forget_all))
    return base


def _adapters(settings: Settings, client: EngineClient, base_name: str) -> AdapterRegistry:
    # A cache folder per base model: each is used by one registry, under its lock (adapter_cache.py).
    folder = (
        settings.data_dir.resolve()
        / "cache"
        / "adapters"
        / hashlib.sha256(base_name.encode()).hexdigest()[:16]
    )
    cache = AdapterCache(folder, max_entries=4 * settings.engine_max_adapters)
    return AdapterRegistry(client, settings.engine_max_adapters, cache)
