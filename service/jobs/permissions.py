"""Sharing fine-tuned models and checkpoints between organizations (OpenAI's checkpoint
permissions). The owner grants an organization (`project_ids`, `org-{name}`) the use of a model it
owns: the model is then listed for that organization, served to it, and trainable from by its jobs
(service/catalog.py reads grants through `shared_with`); deleting the grant takes that away at the
next request, and deleting the model deletes its grants. Only the owner sees or changes grants."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import delete, select

from service.errors import InvalidRequest, NotFound
from service.ids import new_id
from service.jobs.states import JobStatus
from service.pagination import paginate
from service.protocol.common import IdCursorPage
from service.protocol.permissions import CheckpointPermission, DeletedCheckpointPermission
from service.store import ApiKeyRow, CheckpointPermissionRow, CheckpointRow, Database, JobRow

OwnsModel = Callable[[str, str], bool]  # (organization, model name): whether it owns that model


class CheckpointPermissions:
    def __init__(self, db: Database, owns: OwnsModel, default_org: str) -> None:
        self.db = db
        self.owns = owns
        self.default_org = default_org  # the organization of OPENTUNE_API_KEY, which has no row

    def create(self, org_id: str, model: str, project_ids: list[str]) -> IdCursorPage[CheckpointPermission]:
        """One grant per organization named (kept as is when it exists); all of them, or none."""
        self._owned(org_id, model)
        wanted = list(dict.fromkeys(project_ids))
        unknown = [p for p in wanted if p == org_id or not self._is_organization(p)]
        if unknown:
            raise InvalidRequest(
                f"No other organization has the id {unknown[0]!r} (ids look like org-NAME).",
                param="project_ids",
            )
        with self.db.session() as session:
            existing = {
                row.organization_id: row
                for row in session.scalars(
                    select(CheckpointPermissionRow).where(CheckpointPermissionRow.model_name == model)
                )
            }
            granted = []
            for project_id in wanted:
                row = existing.get(project_id) or CheckpointPermissionRow(
                    id=new_id("cp", separator="_"),
                    model_name=model,
                    owner_organization_id=org_id,
                    organization_id=project_id,
                    created_at=int(time.time()),
                )
                session.add(row)
                granted.append(_to_wire(row))
        return IdCursorPage[CheckpointPermission](data=granted, has_more=False)

    def list(
        self,
        org_id: str,
        model: str,
        after: str | None,
        limit: int,
        order: str,
        project_id: str | None,
    ) -> IdCursorPage[CheckpointPermission]:
        self._owned(org_id, model)
        query = select(CheckpointPermissionRow).where(CheckpointPermissionRow.model_name == model)
        if project_id is not None:
            query = query.where(CheckpointPermissionRow.organization_id == project_id)
        oldest_first = (CheckpointPermissionRow.created_at, CheckpointPermissionRow.id)
        ordering = oldest_first if order == "ascending" else tuple(c.desc() for c in oldest_first)
        with self.db.session() as session:
            rows = list(session.scalars(query.order_by(*ordering)))
        page, has_more = paginate(rows, after, limit, lambda r: r.id)
        return IdCursorPage[CheckpointPermission](data=[_to_wire(r) for r in page], has_more=has_more)

    def delete(self, org_id: str, model: str, permission_id: str) -> DeletedCheckpointPermission:
        self._owned(org_id, model)
        with self.db.session() as session:
            row = session.get(CheckpointPermissionRow, permission_id)
            if row is None or row.model_name != model:
                raise NotFound(f"No such permission: {permission_id}", param="permission_id")
            session.delete(row)
        return DeletedCheckpointPermission(id=permission_id)

    def _owned(self, org_id: str, model: str) -> None:
        if not self.owns(org_id, model):
            raise NotFound(
                f"The model `{model}` does not exist or is not yours to share.",
                param="fine_tuned_model_checkpoint",
                code="model_not_found",
            )

    def _is_organization(self, project_id: str) -> bool:
        """An organization this server knows: the default one, or one with a key (revoked too)."""
        if project_id == self.default_org:
            return True
        with self.db.session() as session:
            query = select(ApiKeyRow.id).where(ApiKeyRow.organization_id == project_id).limit(1)
            return session.scalar(query) is not None


def _to_wire(row: CheckpointPermissionRow) -> CheckpointPermission:
    return CheckpointPermission(id=row.id, created_at=row.created_at, project_id=row.organization_id)


def shared_rows(db: Database, org_id: str, name: str | None) -> tuple[list[JobRow], list[CheckpointRow]]:
    """The succeeded jobs (their fine-tuned models) and checkpoints shared with the organization
    (one, by model name), oldest first."""
    granted = select(CheckpointPermissionRow.model_name).where(
        CheckpointPermissionRow.organization_id == org_id
    )
    if name is not None:
        granted = granted.where(CheckpointPermissionRow.model_name == name)
    jobs = (
        select(JobRow)
        .where(
            JobRow.fine_tuned_model.in_(granted),
            JobRow.status == JobStatus.SUCCEEDED.value,
            JobRow.model_deleted_at.is_(None),
        )
        .order_by(JobRow.finished_at)
    )
    checkpoints = (
        select(CheckpointRow)
        .where(CheckpointRow.fine_tuned_model_checkpoint.in_(granted))
        .order_by(CheckpointRow.created_at)
    )
    with db.session() as session:
        return list(session.scalars(jobs)), list(session.scalars(checkpoints))


def forget_grants(db: Database, model: str) -> None:
    """The model was deleted: nobody may use it any more."""
    with db.session() as session:
        session.execute(delete(CheckpointPermissionRow).where(CheckpointPermissionRow.model_name == model))
