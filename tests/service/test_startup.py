"""Start-up and shutdown (service/app.py's lifespan, service/engine/fleet.py's start_fleet), with no
engine process: a step that fails releases what the steps before it acquired (the database, engines
started or starting), and a clean shutdown releases everything in reverse order."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from service import app as app_module
from service.app import create_app
from service.config import Settings
from service.engine import fleet as fleet_module
from service.engine.fleet import EngineFleet, start_fleet
from service.engine.models_file import BaseModelConfig
from service.errors import EngineNotReachable
from service.store.database import Database, open_database

pytestmark = pytest.mark.anyio


def closed_port_url() -> str:
    """The URL of a local port nobody listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


class Released:
    """The order in which start-up's acquisitions were released."""

    def __init__(self) -> None:
        self.order: list[str] = []


@pytest.fixture
def released(monkeypatch: pytest.MonkeyPatch) -> Released:
    """Records the app's database closing (and still closes it)."""
    seen = Released()

    def recorded_database(settings: Settings) -> Database:
        db = open_database(settings)
        close = db.close

        def recorded_close() -> None:
            seen.order.append("database")
            close()

        db.close = recorded_close  # type: ignore[method-assign]
        return db

    monkeypatch.setattr(app_module, "open_database", recorded_database)
    return seen


async def test_unreachable_engine_url_closes_the_database(tmp_path: Path, released: Released) -> None:
    models = tmp_path / "models.json"
    models.write_text(json.dumps({"models": [{"name": "m", "model": "m", "engine_url": closed_port_url()}]}))
    app = create_app(Settings(data_dir=tmp_path, models_file=models), model_paths={"m": tmp_path})
    with pytest.raises(EngineNotReachable):
        async with app.router.lifespan_context(app):
            pytest.fail("the app started without its engine")
    assert released.order == ["database"]


class Anything:
    """Stands in for the fine-tuning parts (their constructors are not what is tested here)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:  # any method the start-up wiring takes from it
        return lambda *args, **kwargs: None


class SchedulerStartFailed(Exception):
    pass


@pytest.fixture
def started_fleet(monkeypatch: pytest.MonkeyPatch, released: Released) -> None:
    """Engines that start at once, recording when they are stopped; fine-tuning parts that do
    nothing."""

    class StoppedFleet(EngineFleet):
        async def stop(self) -> None:
            released.order.append("engines")

    async def start(*args: Any) -> EngineFleet:
        return StoppedFleet([])

    monkeypatch.setattr(app_module, "start_fleet", start)
    monkeypatch.setattr(app_module, "ModelCatalog", Anything)
    monkeypatch.setattr(app_module, "FineTuningService", Anything)


@pytest.mark.usefixtures("started_fleet")
async def test_scheduler_that_fails_to_start_stops_the_engines_and_closes_the_database(
    tmp_path: Path, released: Released, monkeypatch: pytest.MonkeyPatch
) -> None:
    class FailingScheduler(Anything):
        async def start(self) -> None:
            raise SchedulerStartFailed

    monkeypatch.setattr(app_module, "JobScheduler", FailingScheduler)
    app = create_app(Settings(data_dir=tmp_path), model_paths={"m": tmp_path})
    with pytest.raises(SchedulerStartFailed):
        async with app.router.lifespan_context(app):
            pytest.fail("the app started without its scheduler")
    assert released.order == ["engines", "database"]


@pytest.mark.usefixtures("started_fleet")
async def test_shutdown_releases_everything_in_reverse_order(
    tmp_path: Path, released: Released, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Scheduler(Anything):
        async def start(self) -> None:
            pass

        async def stop(self) -> None:
            released.order.append("scheduler")

    monkeypatch.setattr(app_module, "JobScheduler", Scheduler)
    app = create_app(Settings(data_dir=tmp_path), model_paths={"m": tmp_path})
    async with app.router.lifespan_context(app):
        assert released.order == []
    assert released.order == ["scheduler", "engines", "database"]


async def test_a_failing_engine_stops_the_engines_started_and_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three base models: one by URL that answers, one by URL that does not, one managed engine
    still starting when the second fails."""
    answering, closed = "http://answering", closed_port_url()
    closed_clients: list[str] = []
    stopped_managed: list[str] = []

    class Client(fleet_module.EngineClient):
        async def is_healthy(self) -> bool:
            return self.base_url == answering

        async def accepts_key(self) -> bool:
            return True

        async def close(self) -> None:
            closed_clients.append(self.base_url)
            await super().close()

    class SlowManagedEngine:
        def __init__(self, settings: Settings, model_path: Path, log: Path, **kwargs: Any) -> None:
            self.url = "http://managed"

        async def start(self, client: Any) -> None:
            await asyncio.Event().wait()  # vLLM takes minutes

        async def stop(self) -> None:
            stopped_managed.append(self.url)

    monkeypatch.setattr(fleet_module, "EngineClient", Client)
    monkeypatch.setattr(fleet_module, "ManagedEngine", SlowManagedEngine)
    configs = [
        BaseModelConfig(name="a", model="a", engine_url=answering),
        BaseModelConfig(name="b", model="b"),
        BaseModelConfig(name="c", model="c", engine_url=closed),
    ]
    with pytest.raises(EngineNotReachable, match=closed):
        await start_fleet(Settings(data_dir=tmp_path), configs, dict.fromkeys("abc", tmp_path), tmp_path)
    assert sorted(closed_clients) == sorted([answering, "http://managed", closed])
    assert stopped_managed == ["http://managed"]
