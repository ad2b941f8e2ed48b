"""The catalog's view of what the job pipeline produced (service/catalog.py's `ModelRecords`):
fine-tuned models are succeeded jobs' rows, checkpoint models are checkpoint rows."""

from __future__ import annotations

import time

from service.catalog import ServedModel
from service.jobs.checkpoints import CheckpointStore
from service.jobs.permissions import forget_grants, shared_rows
from service.jobs.store import JobStore
from service.store import CheckpointRow, JobRow
from trainer import storage


class JobModelRecords:
    def __init__(self, jobs: JobStore, checkpoints: CheckpointStore) -> None:
        self.jobs = jobs
        self.checkpoints_store = checkpoints

    def fine_tuned(self, org_id: str, name: str | None = None) -> list[ServedModel]:
        return [_fine_tuned_model(row) for row in self.jobs.fine_tuned(org_id, name)]

    def checkpoints(self, org_id: str, name: str | None = None) -> list[ServedModel]:
        if name is None:
            return [_checkpoint_model(row) for row in self.checkpoints_store.of_org(org_id)]
        row = self.checkpoints_store.by_name(org_id, name)
        return [_checkpoint_model(row)] if row is not None else []

    def shared_with(self, org_id: str, name: str | None = None) -> list[ServedModel]:
        jobs, checkpoints = shared_rows(self.jobs.db, org_id, name)
        return [*(_fine_tuned_model(row) for row in jobs), *(_checkpoint_model(row) for row in checkpoints)]

    def forget(self, model: ServedModel) -> None:
        forget_grants(self.jobs.db, model.name)
        if model.checkpoint_id:
            self.checkpoints_store.remove(model.checkpoint_id)
        elif model.job_id:
            self.jobs.update_fields(model.job_id, model_deleted_at=int(time.time()))
        if model.adapter_path:
            storage.remove(model.adapter_path)


def _fine_tuned_model(row: JobRow) -> ServedModel:
    return ServedModel(
        name=row.fine_tuned_model or "",
        created=row.finished_at or row.created_at,
        owned_by=row.organization_id,
        base=row.base_model,
        adapter_path=row.adapter_path,
        job_id=row.id,
    )


def _checkpoint_model(row: CheckpointRow) -> ServedModel:
    return ServedModel(
        name=row.fine_tuned_model_checkpoint,
        created=row.created_at,
        owned_by=row.organization_id,
        base=row.base_model,
        adapter_path=row.path,
        job_id=row.job_id,
        checkpoint_id=row.id,
    )
