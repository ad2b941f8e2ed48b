"""Merged exports of fine-tuned models (an opentune extension): POST starts one, GET polls it; the
zip becomes a file of the organization (`client.files.content(file_id)`)."""

from typing import Annotated

from fastapi import APIRouter, Query

from service.deps import ComponentsDep, PrincipalDep
from service.protocol.common import CursorPage
from service.protocol.exports import CreateExportRequest, ModelExport

router = APIRouter(prefix="/models", tags=["models"])


# `:path` because model names may contain '/' (hub ids), which clients send as %2F.
@router.post("/{model:path}/exports")
def create_export(
    c: ComponentsDep, who: PrincipalDep, model: str, request: CreateExportRequest
) -> ModelExport:
    """Export one of your fine-tuned models or checkpoints; runs in the background."""
    return c.model_exports.create(who.organization_id, model, request)


@router.get("/{model:path}/exports")
def list_exports(
    c: ComponentsDep,
    who: PrincipalDep,
    model: str,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: str | None = None,
) -> CursorPage[ModelExport]:
    return c.model_exports.list(who.organization_id, model, limit, after)


@router.get("/{model:path}/exports/{export_id}")
def retrieve_export(c: ComponentsDep, who: PrincipalDep, model: str, export_id: str) -> ModelExport:
    return c.model_exports.retrieve(who.organization_id, model, export_id)
