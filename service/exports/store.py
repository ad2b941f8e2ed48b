"""Export rows as the API sees them: created, read and listed within one organization, and their
wire form. (How a gateway runs them is service/exports/claims.py.)"""

from __future__ import annotations

import time

from sqlalchemy import func, select

from service.errors import NotFound
from service.ids import new_id
from service.pagination import paginate
from service.protocol.common import CursorPage
from service.protocol.exports import ExportError, ModelExport
from service.store import Database, ModelExportRow

# Statuses of an export that is not finished: they count against the organization's cap.
UNFINISHED = ("queued", "running")


class ExportStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def insert(self, org_id: str, model: str, export_format: str) -> ModelExportRow:
        row = ModelExportRow(
            id=new_id("export"),
            organization_id=org_id,
            model=model,
            format=export_format,
            status="queued",
            created_at=int(time.time()),
            attempts=0,
        )
        with self.db.session() as session:
            session.add(row)
        return row

    def count_unfinished(self, org_id: str) -> int:
        with self.db.session() as session:
            query = select(func.count()).where(
                ModelExportRow.organization_id == org_id, ModelExportRow.status.in_(UNFINISHED)
            )
            return int(session.scalar(query) or 0)

    def get(self, org_id: str, model: str, export_id: str) -> ModelExportRow:
        """The organization's export of `model`; 404 for another organization's or another model's."""
        with self.db.session() as session:
            row = session.get(ModelExportRow, export_id)
        if row is None or row.organization_id != org_id or row.model != model:
            raise NotFound(
                f"No such export of {model}: {export_id}", param="export_id", code="export_not_found"
            )
        return row

    def of_model(self, org_id: str, model: str) -> list[ModelExportRow]:
        """Newest first."""
        with self.db.session() as session:
            query = (
                select(ModelExportRow)
                .where(ModelExportRow.organization_id == org_id, ModelExportRow.model == model)
                .order_by(ModelExportRow.created_at.desc(), ModelExportRow.id.desc())
            )
            return list(session.scalars(query))

    def page(self, rows: list[ModelExportRow], limit: int, after: str | None) -> CursorPage[ModelExport]:
        page, has_more = paginate(rows, after, limit, lambda r: r.id)
        return CursorPage[ModelExport](data=[to_wire(r) for r in page], has_more=has_more)


def to_wire(row: ModelExportRow) -> ModelExport:
    succeeded = row.status == "succeeded"
    return ModelExport(
        id=row.id,
        model=row.model,
        format=row.format,  # the columns hold the wire's values only
        status=row.status,
        file_id=row.file_id if succeeded else None,  # before that it names bytes still being written
        error=ExportError.model_validate(row.error) if row.error else None,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )
