"""Following an engine replica that Ray starts again elsewhere (service/engine/ray_engine.py), with
the actor faked and the engines real HTTP stand-ins (tests/service/test_serving.py): the client is
pointed at the new address, the replica's adapters are forgotten, and it is out of rotation while
the actor cannot be reached. The real actor on a real Ray cluster: tests/e2e/test_ray_engines.py."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from service.config import Settings
from service.engine.client import EngineClient
from service.engine.ray_engine import RayEngine, actor_name
from tests.service.test_serving import Engine

pytestmark = pytest.mark.anyio


class FakeActorEngine(RayEngine):
    """A RayEngine whose actor answers `address` with whatever `where` says (or raises it)."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(Settings(engine_health_interval_s=0.01), tmp_path, "tiny", 0)
        self.where: tuple[str, str] | Exception = ("", "")

    def _get_or_create(self) -> Any:
        return "actor"  # no Ray here

    def call(self, method: str, *args: Any, timeout_s: float = 0) -> Any:
        assert method == "address"
        if isinstance(self.where, Exception):
            raise self.where
        return self.where


async def _until(condition: Any, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_replica_started_again_elsewhere_is_followed(tmp_path: Path) -> None:
    first, second = await Engine().start(), await Engine().start()
    ray_engine, client = FakeActorEngine(tmp_path), EngineClient("http://unplaced.invalid")
    restarts: list[str] = []
    ray_engine.where = (first.url, "key-1")
    await ray_engine.start(client)
    assert client.base_url == first.url and client.http.headers["authorization"] == "Bearer key-1"
    watcher = asyncio.create_task(ray_engine.supervise(client, lambda: restarts.append(ray_engine.url)))
    try:
        ray_engine.where = RuntimeError("actor restarting")  # Ray is starting it again
        await _until(lambda: not client.available)
        ray_engine.where = (second.url, "key-2")
        await _until(lambda: client.available)
        assert restarts == [second.url]  # adapters forgotten once, for the new engine
        assert client.base_url == second.url and client.http.headers["authorization"] == "Bearer key-2"
        await second.stop()  # its engine stops answering: out of rotation, same address
        await _until(lambda: not client.available)
        assert restarts == [second.url]
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await client.close()
        await first.shutdown()
        await second.shutdown()


def test_the_actor_name_changes_with_the_engine_configuration(tmp_path: Path) -> None:
    one = actor_name("tiny", 0, ["--max-loras", "4"], {"A": "1"})
    assert one == actor_name("tiny", 0, ["--max-loras", "4"], {"A": "1"})
    assert one.startswith("opentune-engine-tiny-0-")
    assert one != actor_name("tiny", 0, ["--max-loras", "8"], {"A": "1"})
    assert one != actor_name("tiny", 1, ["--max-loras", "4"], {"A": "1"})
