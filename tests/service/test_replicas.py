"""Serving across engine replicas (service/engine/fleet.py, serving.py, replica.py) against engine
stand-ins (real HTTP servers, tests/service/test_serving.py): an adapter is loaded where routing
sends it, a replica that cannot be reached leaves rotation and its request goes to the next one,
and rejoins once healthy."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from service.engine.fleet import EngineFleet, ServedBase
from service.engine.limits import ChatCaps, ChatLimits
from service.engine.replica import Replica
from service.engine.routing import Router, rendezvous_order
from service.engine.serving import complete
from service.errors import EngineUnreachable
from tests.service.test_adapter_registry import FakeEngine, registry_on
from tests.service.test_serving import CHAT, Catalog, Engine, _send_response

pytestmark = pytest.mark.anyio


class Pair:
    """A base model on two replicas; `engines[i]` answers requests, `admins[i]` adapter loads."""

    def __init__(self, tmp_path: Path, engines: list[Engine]) -> None:
        self.engines, self.admins = engines, [FakeEngine(), FakeEngine()]
        self.replicas = [
            Replica(f"managed-{i}", self.engines[i].client(), registry_on(self.admins[i], 12))
            for i in range(2)
        ]
        self.base = ServedBase("base", tmp_path, self.replicas, Router())
        self.limits = ChatLimits(ChatCaps(8, 4, 100))

    async def complete(self, model: str, **body: Any) -> Any:
        fleet = EngineFleet([self.base])
        return await complete(Catalog(), fleet, self.limits, "org", CHAT, {"model": model, **body})

    def preferred(self, adapter: str) -> int:
        return self.replicas.index(rendezvous_order(adapter, self.replicas)[0])


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    engines = [await Engine().start(), await Engine().start()]
    yield Pair(tmp_path, engines)
    for engine in engines:
        await engine.shutdown()


ADAPTERS = [f"ft:base:org::job-{i}" for i in range(12)]


async def test_each_adapter_is_loaded_on_its_replica_only(pair: Pair) -> None:
    for _ in range(3):
        for name in ADAPTERS:
            await pair.complete(name)
    for name in ADAPTERS:
        mine = pair.preferred(name)
        assert pair.admins[mine].loads(name) == 1 and pair.admins[1 - mine].loads(name) == 0
    assert all(admin.loads() > 0 for admin in pair.admins)  # 12 adapters use both replicas


async def test_an_unreachable_replica_leaves_rotation_and_its_request_goes_elsewhere(pair: Pair) -> None:
    name = ADAPTERS[0]
    dead, alive = pair.preferred(name), 1 - pair.preferred(name)
    await pair.engines[dead].stop()
    answer = await pair.complete(name)
    assert json.loads(bytes(answer.body))["object"] == "chat.completion"
    assert not pair.replicas[dead].available and pair.replicas[alive].available
    assert pair.admins[alive].loads(name) == 1
    # Later requests are not sent to it at all.
    loads_before = pair.admins[dead].loads()
    for other in ADAPTERS:
        await pair.complete(other)
    assert pair.admins[dead].loads() == loads_before
    assert pair.limits.in_flight("org") == 0 and all(r.in_flight == 0 for r in pair.replicas)


async def test_no_replica_left_is_an_unavailable_engine_and_holds_nothing(pair: Pair) -> None:
    for engine in pair.engines:
        await engine.stop()
    with pytest.raises(EngineUnreachable):
        await pair.complete("base")
    assert not any(r.available for r in pair.replicas)
    assert pair.limits.in_flight("org") == 0 and all(r.in_flight == 0 for r in pair.replicas)
    with pytest.raises(EngineUnreachable):  # refused before trying anything
        await pair.complete(ADAPTERS[0])
    assert all(admin.calls == [] for admin in pair.admins)


async def test_streams_count_as_in_flight_and_base_requests_go_to_the_least_busy(pair: Pair) -> None:
    first = await pair.complete("base", stream=True)
    busy = next(i for i, r in enumerate(pair.replicas) if r.in_flight == 1)
    second = await pair.complete("base", stream=True)
    assert pair.replicas[1 - busy].in_flight == 1
    for response in (first, second):
        await _send_response(response)
    assert all(r.in_flight == 0 for r in pair.replicas)


async def test_a_finished_job_is_preloaded_where_it_will_be_served_and_unloaded_everywhere(
    pair: Pair,
) -> None:
    name = ADAPTERS[3]
    await pair.base.preload(name, "/adapters/x")
    assert name in pair.admins[pair.preferred(name)].loaded
    pair.replicas[pair.preferred(name)].client.available = False  # it left: served by the other
    await pair.complete(name)
    assert all(name in admin.loaded for admin in pair.admins)
    await pair.base.unload_everywhere(name)
    assert not any(name in admin.loaded for admin in pair.admins)


async def test_an_engine_by_url_leaves_rotation_while_unhealthy_and_rejoins_empty(pair: Pair) -> None:
    replica, engine = pair.replicas[0], pair.engines[0]
    await replica.adapters.ensure_loaded("ft:a", "/adapters/a")
    replica.watch(interval_s=0.01)  # not managed: watched by health checks
    try:
        await engine.stop()
        await _until(lambda: not replica.available)
        await engine.restart()
        await _until(lambda: replica.available)
        assert replica.adapters.resident == []  # it may have restarted: adapters load again on demand
    finally:
        await replica.stop()


async def _until(condition: Any, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)
