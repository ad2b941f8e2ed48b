"""The models a caller can use: the served base model, the caller's fine-tuned models and their
checkpoints; and deleting fine-tuned ones."""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import dataclass

from sqlalchemy import select

from service.engine.fleet import EngineFleet
from service.errors import NotFound, PermissionDenied
from service.jobs.checkpoints import CheckpointStore
from service.jobs.naming import base_of
from service.jobs.states import JobStatus
from service.jobs.store import JobStore
from service.protocol.common import DeletedObject
from service.protocol.models import Model, ModelList
from service.store import CheckpointRow, Database, JobRow


@dataclass(frozen=True)
class ServedModel:
    name: str
    created: int
    owned_by: str
    base: str  # the base model (and so the engine) it runs on
    adapter_path: str | None = None
    job_id: str | None = None
    checkpoint_id: str | None = None

    def to_wire(self) -> Model:
        return Model(id=self.name, created=self.created, owned_by=self.owned_by)


class ModelCatalog:
    def __init__(
        self, db: Database, jobs: JobStore, checkpoints: CheckpointStore, fleet: EngineFleet, started_at: int
    ) -> None:
        self.db = db
        self.jobs = jobs
        self.checkpoints = checkpoints
        self.fleet = fleet
        self.bases = {name: ServedModel(name, started_at, "system", base=name) for name in fleet.names}

    @property
    def base_names(self) -> list[str]:
        return list(self.bases)

    def _fine_tuned(self, org_id: str, name: str | None = None) -> list[ServedModel]:
        query = select(JobRow).where(
            JobRow.organization_id == org_id,
            JobRow.status == JobStatus.SUCCEEDED.value,
            JobRow.fine_tuned_model.is_not(None),
            JobRow.model_deleted_at.is_(None),
        )
        if name is not None:
            query = query.where(JobRow.fine_tuned_model == name)
        with self.db.session() as session:
            rows = list(session.scalars(query.order_by(JobRow.finished_at)))
        return [
            ServedModel(
                name=row.fine_tuned_model or "",
                created=row.finished_at or row.created_at,
                owned_by=org_id,
                base=base_of(row.model_name),
                adapter_path=row.adapter_path,
                job_id=row.id,
            )
            for row in rows
        ]

    def _checkpoint_models(self, org_id: str) -> list[ServedModel]:
        return [_checkpoint_model(c) for c in self.checkpoints.of_org(org_id)]

    def list(self, org_id: str) -> ModelList:
        models = [*self.bases.values(), *self._fine_tuned(org_id), *self._checkpoint_models(org_id)]
        return ModelList(data=[m.to_wire() for m in models])

    def resolve(self, org_id: str, name: str) -> ServedModel:
        if name in self.bases:
            return self.bases[name]
        found = self._fine_tuned(org_id, name)
        if found:
            return found[0]
        checkpoint = self.checkpoints.by_name(org_id, name)
        if checkpoint is not None:
            return _checkpoint_model(checkpoint)
        raise NotFound(
            f"The model `{name}` does not exist or you do not have access to it. Base models served "
            f"here: {', '.join(self.bases)}; GET /v1/models lists yours too.",
            param="model",
            code="model_not_found",
        )

    async def delete(self, org_id: str, name: str) -> DeletedObject:
        """Unload a fine-tuned model (or checkpoint) from the engine and free its disk."""
        if name in self.bases:
            raise PermissionDenied(
                f"The model `{name}` is a base model served by this server; it cannot be deleted.",
                param="model",
                code="model_not_deletable",
            )
        model = await asyncio.to_thread(self.resolve, org_id, name)
        await self.fleet.get(model.base).adapters.unload(model.name)
        await asyncio.to_thread(self._forget, model)
        return DeletedObject(id=name, object="model", deleted=True)

    def _forget(self, model: ServedModel) -> None:
        if model.checkpoint_id:
            self.checkpoints.remove(model.checkpoint_id)
        elif model.job_id:
            self.jobs.update_fields(model.job_id, model_deleted_at=int(time.time()))
        if model.adapter_path:
            shutil.rmtree(model.adapter_path, ignore_errors=True)


def _checkpoint_model(row: CheckpointRow) -> ServedModel:
    return ServedModel(
        name=row.fine_tuned_model_checkpoint,
        created=row.created_at,
        owned_by=row.organization_id,
        base=base_of(row.fine_tuned_model_checkpoint),
        adapter_path=row.path,
        job_id=row.job_id,
        checkpoint_id=row.id,
    )
