"""Typed accessors for the app's components, for handlers (`Annotated[..., Depends(...)]`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from service.access import PRINCIPAL
from service.auth import KeyRing, Principal
from service.catalog import ModelCatalog
from service.engine.fleet import EngineFleet
from service.engine.limits import ChatLimits
from service.errors import AuthenticationFailed
from service.exports.service import ModelExports
from service.files import FileStore
from service.graders import GraderService
from service.jobs.checkpoints import CheckpointStore
from service.jobs.permissions import CheckpointPermissions
from service.jobs.service import FineTuningService
from service.jobs.store import JobStore
from service.uploads import UploadStore
from service.webhooks.dispatcher import WebhookDispatcher
from service.webhooks.endpoints import WebhookEndpoints
from service.webhooks.outbox import Outbox
from service.weights.download import AdapterDownloads
from service.weights.importer import AdapterImporter


@dataclass
class Components:
    keys: KeyRing
    files: FileStore
    uploads: UploadStore
    jobs: JobStore
    checkpoints: CheckpointStore
    permissions: CheckpointPermissions
    fine_tuning: FineTuningService
    catalog: ModelCatalog
    fleet: EngineFleet
    chat_limits: ChatLimits
    webhooks: WebhookEndpoints
    outbox: Outbox
    webhook_dispatcher: WebhookDispatcher
    graders: GraderService
    model_exports: ModelExports
    adapter_downloads: AdapterDownloads
    adapter_imports: AdapterImporter


async def components(request: Request) -> Components:
    # async: FastAPI runs a plain `def` dependency in its thread pool, a hop that under load cost
    # each request milliseconds waiting for the GIL back (py-spy: 37% of the event loop's samples
    # at 16 concurrent streams, in the Condition.notify of that hop).
    found: Components = request.app.state.components
    return found


async def principal(request: Request) -> Principal:
    """Who is calling, as `AuthenticationMiddleware` (service/access.py) found before the body was
    read. A route it did not cover gets no principal: refused, never the default organization."""
    found = request.scope.get("state", {}).get(PRINCIPAL)
    if not isinstance(found, Principal):
        raise AuthenticationFailed("This request was not authenticated.")
    return found


ComponentsDep = Annotated[Components, Depends(components)]
PrincipalDep = Annotated[Principal, Depends(principal)]
