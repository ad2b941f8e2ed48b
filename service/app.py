"""The FastAPI application and its lifespan: database, engines (with their adapter registries),
job scheduler."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import api
from service.access import AuthenticationMiddleware, BodySizeLimitMiddleware
from service.api.metrics import metrics_router
from service.auth import KeyRing
from service.catalog import ModelCatalog
from service.config import Settings
from service.deps import Components
from service.engine.fleet import start_fleet
from service.engine.limits import ChatCaps, ChatLimits
from service.engine.model_source import resolve_model_path
from service.engine.models_file import configured_base_models
from service.errors import install_error_handlers
from service.exports.claims import ExportClaims
from service.exports.launcher import LocalExportLauncher
from service.exports.runner import ExportPolicy, ExportRunner
from service.exports.service import ModelExports
from service.exports.sources import ExportSources
from service.exports.store import ExportStore
from service.files import FileStore, StorageQuota
from service.graders import GraderService, embeddings_endpoint, sandbox_limits
from service.ids import random_token
from service.jobs.checkpoints import CheckpointStore
from service.jobs.evaluator import JobEvaluator
from service.jobs.executor import TrainerExecutor
from service.jobs.local_executor import LocalProcessExecutor
from service.jobs.model_records import JobModelRecords
from service.jobs.permissions import CheckpointPermissions
from service.jobs.quotas import JobLimits
from service.jobs.scheduler import JobScheduler
from service.jobs.service import FineTuningService
from service.jobs.store import JobStore
from service.metrics import HttpMetricsMiddleware
from service.openapi import build_openapi
from service.store.database import open_database
from service.uploads import UploadLimits, UploadStore
from service.webhooks.dispatcher import DeliveryPolicy, WebhookDispatcher
from service.webhooks.endpoints import WebhookEndpoints
from service.webhooks.outbox import Outbox
from service.weights.download import AdapterDownloads
from service.weights.importer import AdapterImporter, ImportLimits
from service.weights.imports import ImportedModels
from service.weights.layout import base_reference
from service.weights.records import CombinedRecords
from trainer import storage
from trainer.graders import Sandbox

logger = logging.getLogger(__name__)


def create_app(settings: Settings, model_paths: dict[str, Path] | None = None) -> FastAPI:
    """The app; `model_paths` maps base model names to local folders when the caller already
    resolved them (the CLI does, to fail fast with one line)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Whatever start-up acquired is released in reverse order, after serving or when a later
        # step fails: a failed start leaves no open database, running engine or trainer behind.
        async with AsyncExitStack() as started:
            app.state.components = await _start(settings, model_paths, started)
            yield

    app = FastAPI(title="opentune", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(api.health.router)
    app.include_router(metrics_router(settings.metrics_require_key))
    app.include_router(api.v1)
    app.include_router(api.dashboard.router)
    # The last added runs first: request id, then the key, then the body cap, then the route.
    app.add_middleware(
        BodySizeLimitMiddleware,
        upload_max_bytes=settings.max_upload_body_bytes,
        max_bytes=settings.max_request_body_bytes,
        part_max_bytes=settings.upload_part_max_bytes + 2**20,  # plus the multipart framing
        import_max_bytes=settings.import_max_bytes + 2**20,
    )
    app.add_middleware(AuthenticationMiddleware, key_ring=lambda: _components(app).keys)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(HttpMetricsMiddleware)  # outermost: it sees every answer, refusals included
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app


async def _start(
    settings: Settings, model_paths: dict[str, Path] | None, started: AsyncExitStack
) -> Components:
    """Open the database, start the engines and the job scheduler; each registers its release on
    `started` as soon as it succeeds."""
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(settings)
    started.callback(db.close)
    configs = configured_base_models(settings)
    paths = model_paths or {c.name: resolve_model_path(c.model) for c in configs}
    fleet = await start_fleet(settings, configs, paths, data_dir / "logs")
    started.push_async_callback(fleet.stop)
    root = settings.storage_root
    files = FileStore(db, storage.join(root, "files"), quota=StorageQuota.from_settings(settings))
    uploads = UploadStore(db, files, storage.join(root, "uploads"), UploadLimits.from_settings(settings))
    jobs = JobStore(db)
    checkpoints = CheckpointStore(db)

    # Fine-tuning: the model catalog, the job scheduler and the service the API calls.
    # Imported adapters (service/weights/) are models too, and their bytes count against the quota.
    imports = ImportedModels(db, storage.join(root, "imports"))
    files.stored_elsewhere.append(imports.stored_bytes)
    records = CombinedRecords([JobModelRecords(jobs, checkpoints), imports])
    catalog = ModelCatalog(records, fleet, started_at=int(time.time()))
    executor = _trainer_executor(settings, storage.join(root, "jobs"), data_dir / "jobs")
    # Python graders' sandbox: the graders endpoints, reinforcement jobs' grader checks, evaluations.
    sandbox = Sandbox(sandbox_limits(settings))
    chat_limits = ChatLimits(ChatCaps.from_settings(settings))  # chat, and model graders' calls
    graders = GraderService(catalog, fleet, chat_limits, sandbox, embeddings_endpoint(settings))
    # Jobs with a validation file end with an evaluation report (service/jobs/evaluator.py).
    evaluator = JobEvaluator(settings, jobs, files, fleet, chat_limits, graders.context)
    scheduler = JobScheduler(settings, jobs, checkpoints, files, catalog, fleet, executor, evaluator)
    fine_tuning = FineTuningService(
        jobs,
        files,
        catalog,
        scheduler,
        settings.engine_max_lora_rank,
        limits=JobLimits.from_settings(settings),
        grading=graders.context,
    )

    # Webhooks: the outbox that job transitions write, and this gateway's sender of it.
    outbox = Outbox(db, settings.resolved_gateway_id, lease_s=settings.webhooks_timeout_s * 6)
    dispatcher = WebhookDispatcher(outbox, DeliveryPolicy.from_settings(settings))

    # Merged exports of fine-tuned models (service/exports/): each in a process of its own, run by
    # this gateway's export runner, which starts after the job scheduler.
    export_sources = ExportSources(catalog, fleet)
    export_claims = ExportClaims(db, settings.resolved_gateway_id, settings.job_lease_s)
    export_launcher = LocalExportLauncher(data_dir / "exports", settings.export_max_shard_size)
    export_policy = ExportPolicy.from_settings(settings)
    export_runner = ExportRunner(export_claims, export_sources, export_launcher, files, export_policy)
    max_unfinished = settings.max_unfinished_exports_per_org
    model_exports = ModelExports(ExportStore(db), export_sources, export_runner.notify, max_unfinished)

    # What downloaded adapters name as their base: the hub id, never a server path (layout.py).
    base_references = {c.name: base_reference(c.name, c.model) for c in configs}
    components = Components(
        keys=KeyRing(settings, db),
        files=files,
        uploads=uploads,
        jobs=jobs,
        checkpoints=checkpoints,
        permissions=CheckpointPermissions(db, catalog.owns, settings.organization_id),
        fine_tuning=fine_tuning,
        catalog=catalog,
        fleet=fleet,
        chat_limits=chat_limits,
        webhooks=WebhookEndpoints(db, settings.webhooks_allow_http, settings.webhooks_max_endpoints_per_org),
        outbox=outbox,
        webhook_dispatcher=dispatcher,
        graders=graders,
        model_exports=model_exports,
        adapter_downloads=AdapterDownloads(catalog, jobs, checkpoints, imports, fleet, base_references),
        adapter_imports=AdapterImporter(catalog, fleet, imports, files, ImportLimits.from_settings(settings)),
    )
    await scheduler.start()
    started.push_async_callback(scheduler.stop)
    await dispatcher.start()
    started.push_async_callback(dispatcher.stop)
    await export_runner.start()
    started.push_async_callback(export_runner.stop)
    return components


def _trainer_executor(settings: Settings, jobs: str, logs_dir: Path) -> TrainerExecutor:
    if settings.executor == "ray":
        # Imported only here: Ray is an optional dependency (the `cluster` extra).
        from service.jobs.ray_executor import RayExecutor

        python = settings.ray_python or sys.executable
        return RayExecutor(settings.ray_address, jobs, python, settings.ray_trainer_resources)
    return LocalProcessExecutor(jobs, logs_dir)


def _components(app: FastAPI) -> Components:
    found: Components = app.state.components
    return found


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
