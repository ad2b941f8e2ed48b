"""Typed accessors for the app's components, for handlers (`Annotated[..., Depends(...)]`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from service.auth import KeyRing, Principal
from service.catalog import ModelCatalog
from service.engine.fleet import EngineFleet
from service.files import FileStore
from service.jobs.checkpoints import CheckpointStore
from service.jobs.service import FineTuningService
from service.jobs.store import JobStore


@dataclass
class Components:
    keys: KeyRing
    files: FileStore
    jobs: JobStore
    checkpoints: CheckpointStore
    fine_tuning: FineTuningService
    catalog: ModelCatalog
    fleet: EngineFleet


def components(request: Request) -> Components:
    found: Components = request.app.state.components
    return found


async def principal(request: Request) -> Principal:
    # Async: runs on the event loop, not a worker thread. KeyRing answers from memory almost always
    # (a miss is one indexed SQLite read).
    return components(request).keys.authenticate(request.headers.get("authorization"))


ComponentsDep = Annotated[Components, Depends(components)]
PrincipalDep = Annotated[Principal, Depends(principal)]
