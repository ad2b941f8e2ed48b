"""Imported models (POST /v1/models/import): rows of `imported_models`, their stored files, and
the catalog's view of them (service/catalog.py's `ModelRecords`). An imported model is a
fine-tuned model like a trained one: listed, served, deletable, shareable through checkpoint
permissions, and a job may continue training from it."""

from __future__ import annotations

from sqlalchemy import delete, func, select

from service.catalog import ServedModel
from service.jobs.permissions import forget_grants
from service.store import CheckpointPermissionRow, Database, ImportedModelRow
from trainer import storage


class ImportedModels:
    def __init__(self, db: Database, root: str) -> None:
        """`root`: the storage location (trainer/storage.py) imported adapters live under."""
        self.db = db
        self.root = root

    def location_of(self, import_id: str) -> str:
        # Ids are generated here ([A-Za-z0-9-]), so this cannot leave the imports folder.
        return storage.join(self.root, import_id)

    def add(self, row: ImportedModelRow) -> None:
        with self.db.session() as session:
            session.add(row)

    def by_name(self, org_id: str, name: str) -> ImportedModelRow | None:
        """The organization's own imported model `name`."""
        with self.db.session() as session:
            row = session.scalar(select(ImportedModelRow).where(ImportedModelRow.model_name == name))
        return row if row is not None and row.organization_id == org_id else None

    def stored_bytes(self, org_id: str) -> int:
        """What the organization's imported adapters take in storage (its quota counts them)."""
        with self.db.session() as session:
            query = select(func.coalesce(func.sum(ImportedModelRow.bytes), 0))
            return int(session.scalar(query.where(ImportedModelRow.organization_id == org_id)) or 0)

    # -- ModelRecords (service/catalog.py) ------------------------------------------------------

    def fine_tuned(self, org_id: str, name: str | None = None) -> list[ServedModel]:
        query = select(ImportedModelRow).where(ImportedModelRow.organization_id == org_id)
        if name is not None:
            query = query.where(ImportedModelRow.model_name == name)
        with self.db.session() as session:
            rows = list(session.scalars(query.order_by(ImportedModelRow.created_at)))
        return [served_model(row) for row in rows]

    def checkpoints(self, org_id: str, name: str | None = None) -> list[ServedModel]:
        return []  # an imported adapter is one model, with no checkpoints

    def shared_with(self, org_id: str, name: str | None = None) -> list[ServedModel]:
        granted = select(CheckpointPermissionRow.model_name).where(
            CheckpointPermissionRow.organization_id == org_id
        )
        if name is not None:
            granted = granted.where(CheckpointPermissionRow.model_name == name)
        query = select(ImportedModelRow).where(ImportedModelRow.model_name.in_(granted))
        with self.db.session() as session:
            rows = list(session.scalars(query.order_by(ImportedModelRow.created_at)))
        return [served_model(row) for row in rows]

    def forget(self, model: ServedModel) -> None:
        forget_grants(self.db, model.name)
        with self.db.session() as session:
            session.execute(delete(ImportedModelRow).where(ImportedModelRow.model_name == model.name))
        if model.adapter_path:
            storage.remove(model.adapter_path)


def served_model(row: ImportedModelRow) -> ServedModel:
    return ServedModel(
        name=row.model_name,
        created=row.created_at,
        owned_by=row.organization_id,
        base=row.base_model,
        adapter_path=row.path,
    )
