"""The adapter registry (service/engine/adapters.py) against a stand-in engine client: loads once,
evicts the least recently used beyond the cap but never an adapter in use, and takes the engine's
"already loaded" and "not found" answers as the state they describe."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.engine.adapters import AdapterRegistry
from service.errors import AdapterLoadError, EngineRejected
from tests.service.fake_engine import FakeEngine

pytestmark = pytest.mark.anyio


def registry_on(engine: FakeEngine, max_resident: int = 2) -> AdapterRegistry:
    fake: Any = engine  # the registry only calls load_adapter and unload_adapter
    return AdapterRegistry(fake, max_resident)


async def test_least_recently_used_adapter_is_evicted_beyond_the_cap() -> None:
    engine = FakeEngine()
    registry = registry_on(engine)
    await registry.ensure_loaded("a", "/adapters/a")
    await registry.ensure_loaded("b", "/adapters/b")
    await registry.ensure_loaded("a", "/adapters/a")  # used again: "b" is now the least recent
    await registry.ensure_loaded("c", "/adapters/c")
    assert registry.resident == ["a", "c"]
    assert ("unload", "b") in engine.calls
    assert engine.loads("a") == 1  # a resident adapter is not loaded again


async def test_an_adapter_in_use_is_never_evicted_and_the_cap_returns_once_released() -> None:
    engine = FakeEngine()
    registry = registry_on(engine, max_resident=1)
    await registry.acquire("a", "/adapters/a")
    await registry.acquire("b", "/adapters/b")
    assert registry.resident == ["a", "b"]  # over the cap: both serve a request
    registry.release("a")
    await registry.ensure_loaded("c", "/adapters/c")
    assert "a" not in registry.resident  # released, so evictable
    assert "b" in registry.resident  # still in use
    registry.release("b")
    await registry.ensure_loaded("c", "/adapters/c")
    assert registry.resident == ["c"]


async def test_concurrent_first_requests_load_an_adapter_once() -> None:
    engine = FakeEngine()
    registry = registry_on(engine)
    await asyncio.gather(*(registry.acquire("a", "/adapters/a") for _ in range(20)))
    assert engine.loads("a") == 1
    assert registry.loads == 1
    for _ in range(20):
        registry.release("a")


async def test_already_loaded_answer_counts_as_loaded() -> None:
    engine = FakeEngine()
    engine.refuse_load["a"] = EngineRejected(
        400, {"error": {"message": "The lora adapter 'a' has already been loaded."}}
    )
    registry = registry_on(engine)
    await registry.ensure_loaded("a", "/adapters/a")  # the engine kept it across our restart
    assert registry.resident == ["a"]


async def test_unloading_an_adapter_the_engine_forgot_is_fine() -> None:
    engine = FakeEngine()
    engine.refuse_unload["a"] = EngineRejected(404, {"error": {"message": "not found"}})
    registry = registry_on(engine)
    await registry.ensure_loaded("a", "/adapters/a")
    await registry.unload("a")
    assert registry.resident == []


async def test_load_failure_raises_adapter_load_error_and_leaves_nothing_resident() -> None:
    engine = FakeEngine()
    engine.refuse_load["a"] = EngineRejected(400, {"error": {"message": "invalid adapter config"}})
    registry = registry_on(engine)
    with pytest.raises(AdapterLoadError, match="invalid adapter config"):
        await registry.acquire("a", "/adapters/a")
    assert registry.resident == []
    assert registry.loads == 0
    del engine.refuse_load["a"]
    await registry.ensure_loaded("a", "/adapters/a")  # a later request tries again
    assert registry.resident == ["a"]


async def test_failed_eviction_does_not_leave_the_acquired_adapter_held() -> None:
    engine = FakeEngine()
    engine.refuse_unload["a"] = EngineRejected(500, {"error": {"message": "engine error"}})
    registry = registry_on(engine, max_resident=1)
    await registry.ensure_loaded("a", "/adapters/a")
    with pytest.raises(EngineRejected):
        await registry.acquire("b", "/adapters/b")  # evicting "a" fails
    del engine.refuse_unload["a"]
    await registry.ensure_loaded("c", "/adapters/c")
    assert registry.resident == ["c"]  # "b" was not left marked in use
