"""The FastAPI application and its lifespan: database, engine, adapter registry, scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import api
from service.adapters import AdapterRegistry
from service.auth import KeyRing
from service.catalog import ModelCatalog
from service.config import Settings
from service.deps import Components
from service.engine.client import EngineClient
from service.engine.model_source import resolve_model_path
from service.engine.process import ManagedEngine
from service.errors import install_error_handlers
from service.files import FileStore
from service.ids import random_token
from service.jobs.checkpoints import CheckpointStore
from service.jobs.scheduler import JobScheduler
from service.jobs.service import FineTuningService
from service.jobs.store import JobStore
from service.openapi import build_openapi
from service.store.database import open_database

logger = logging.getLogger(__name__)


class EngineNotReachable(Exception):
    pass


def create_app(settings: Settings, model_path: Path | None = None) -> FastAPI:
    """The app; `model_path` is the base model's local folder when the caller already resolved it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        data_dir = settings.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        db = open_database(settings)
        base_path = model_path or resolve_model_path(settings.model)

        managed: ManagedEngine | None = None
        if settings.engine_url:
            engine = EngineClient(settings.engine_url)
            if not await engine.is_healthy():
                raise EngineNotReachable(f"no healthy vLLM engine at {settings.engine_url}")
        else:
            managed = ManagedEngine(settings, base_path, data_dir / "logs" / "engine.log")
            engine = EngineClient(managed.url)
            await managed.start(engine)

        files = FileStore(db, data_dir / "files")
        jobs = JobStore(db)
        checkpoints = CheckpointStore(db)
        adapters = AdapterRegistry(engine, settings.engine_max_adapters)
        catalog = ModelCatalog(settings, db, jobs, checkpoints, adapters, started_at=int(time.time()))
        scheduler = JobScheduler(settings, jobs, checkpoints, files, catalog, adapters, base_path)
        app.state.components = Components(
            keys=KeyRing(settings, db),
            files=files,
            jobs=jobs,
            checkpoints=checkpoints,
            fine_tuning=FineTuningService(jobs, files, catalog, scheduler, settings.engine_max_lora_rank),
            catalog=catalog,
            engine=engine,
            adapters=adapters,
        )
        await scheduler.start()
        supervisor = asyncio.create_task(managed.supervise(engine, adapters.forget_all)) if managed else None
        try:
            yield
        finally:
            if supervisor:
                supervisor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await supervisor
            await scheduler.stop()
            await engine.close()
            if managed:
                await managed.stop()
            db.close()

    app = FastAPI(title="opentune", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(api.health.router)
    app.include_router(api.v1)
    app.add_middleware(RequestIdMiddleware)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app


class RequestIdMiddleware:
    """Adds `x-request-id` to every response (the SDK exposes it as `_request_id`).

    Plain ASGI rather than `@app.middleware("http")`, which buffers exceptions and streams badly.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{random_token(24)}".encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id)]
            await send(message)

        await self.app(scope, receive, send_with_id)
