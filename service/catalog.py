"""The models a caller can use: the served base model and the caller's fine-tuned models."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from service.config import Settings
from service.errors import NotFound
from service.jobs.states import JobStatus
from service.protocol.models import Model, ModelList
from service.store import Database, JobRow


@dataclass(frozen=True)
class ServedModel:
    name: str
    created: int
    owned_by: str
    adapter_path: str | None = None

    def to_wire(self) -> Model:
        return Model(id=self.name, created=self.created, owned_by=self.owned_by)


class ModelCatalog:
    def __init__(self, settings: Settings, db: Database, started_at: int) -> None:
        self.db = db
        self.base = ServedModel(name=settings.model_name, created=started_at, owned_by="system")

    @property
    def base_names(self) -> list[str]:
        return [self.base.name]

    def fine_tuned(self, org_id: str) -> list[ServedModel]:
        with self.db.session() as session:
            rows = session.scalars(
                select(JobRow)
                .where(
                    JobRow.organization_id == org_id,
                    JobRow.status == JobStatus.SUCCEEDED.value,
                    JobRow.fine_tuned_model.is_not(None),
                )
                .order_by(JobRow.finished_at)
            )
            return [
                ServedModel(
                    name=row.fine_tuned_model or "",
                    created=row.finished_at or row.created_at,
                    owned_by=org_id,
                    adapter_path=row.adapter_path,
                )
                for row in rows
            ]

    def list(self, org_id: str) -> ModelList:
        return ModelList(data=[m.to_wire() for m in [self.base, *self.fine_tuned(org_id)]])

    def resolve(self, org_id: str, name: str) -> ServedModel:
        if name == self.base.name:
            return self.base
        for model in self.fine_tuned(org_id):
            if model.name == name:
                return model
        raise NotFound(
            f"The model `{name}` does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
