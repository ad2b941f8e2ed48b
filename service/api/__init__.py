"""HTTP routers: parse, call one domain function, return.

Everything under /v1 needs a principal: service/access.py authenticates before the body is read;
the router-wide dependency makes a route without one fail closed (401).
"""

from fastapi import APIRouter, Depends

from service.api import (
    chat,
    checkpoint_permissions,
    dashboard,
    files,
    fine_tuning,
    graders,
    health,
    model_exports,
    model_weights,
    models,
    uploads,
    webhooks,
)
from service.deps import principal

# model_weights and model_exports before models: its `{model:path}` routes would take their paths.
v1 = APIRouter(prefix="/v1", dependencies=[Depends(principal)])
for module in (
    files,
    uploads,
    fine_tuning,
    checkpoint_permissions,
    graders,
    model_weights,
    model_exports,
    models,
    chat,
    webhooks,
):
    v1.include_router(module.router)

__all__ = ["dashboard", "health", "v1"]
