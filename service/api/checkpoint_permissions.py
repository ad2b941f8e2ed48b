"""Checkpoint permission routes, at OpenAI's paths (`client.fine_tuning.checkpoints.permissions`).
`:path`, because a model name may contain '/' (a hub id as base), which the SDK sends as %2F."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from service.deps import ComponentsDep, PrincipalDep
from service.protocol.common import IdCursorPage
from service.protocol.permissions import (
    CheckpointPermission,
    CreateCheckpointPermissionRequest,
    DeletedCheckpointPermission,
)

router = APIRouter(prefix="/fine_tuning/checkpoints", tags=["fine-tuning"])


@router.post("/{fine_tuned_model_checkpoint:path}/permissions")
def create_checkpoint_permissions(
    c: ComponentsDep,
    who: PrincipalDep,
    fine_tuned_model_checkpoint: str,
    body: CreateCheckpointPermissionRequest,
) -> IdCursorPage[CheckpointPermission]:
    """Share one of the caller's fine-tuned models or checkpoints with other organizations."""
    return c.permissions.create(who.organization_id, fine_tuned_model_checkpoint, body.project_ids)


@router.get("/{fine_tuned_model_checkpoint:path}/permissions")
def list_checkpoint_permissions(
    c: ComponentsDep,
    who: PrincipalDep,
    fine_tuned_model_checkpoint: str,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    order: Literal["ascending", "descending"] = "descending",
    project_id: str | None = None,
) -> IdCursorPage[CheckpointPermission]:
    return c.permissions.list(
        who.organization_id, fine_tuned_model_checkpoint, after, limit, order, project_id
    )


@router.delete("/{fine_tuned_model_checkpoint:path}/permissions/{permission_id}")
def delete_checkpoint_permission(
    c: ComponentsDep, who: PrincipalDep, fine_tuned_model_checkpoint: str, permission_id: str
) -> DeletedCheckpointPermission:
    """The organization it was shared with loses the model at its next request."""
    return c.permissions.delete(who.organization_id, fine_tuned_model_checkpoint, permission_id)
