"""The models a caller can use, in one place: the served base models, the caller's fine-tuned models
and their checkpoints. `resolve` answers "what does this name serve" (chat, /v1/models, a job
continuing from it); `trainable` answers "what does a job on this name train from".

Fine-tuned models are recorded by the job pipeline; the catalog reads them through `ModelRecords`
(implemented in service/jobs/model_records.py) so that it never imports its callers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from service.engine.fleet import EngineFleet
from service.errors import InvalidRequest, NotFound, PermissionDenied
from service.protocol.common import DeletedObject
from service.protocol.models import Model, ModelList


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


class ModelRecords(Protocol):
    """Where fine-tuned models and checkpoints are recorded."""

    def fine_tuned(self, org_id: str, name: str | None = None) -> list[ServedModel]:
        """The organization's fine-tuned models (one, by `name`), oldest first."""
        ...

    def checkpoints(self, org_id: str, name: str | None = None) -> list[ServedModel]:
        """The organization's checkpoint models (one, by `name`), oldest first."""
        ...

    def shared_with(self, org_id: str, name: str | None = None) -> list[ServedModel]:
        """Other organizations' models shared with this one (service/jobs/permissions.py)."""
        ...

    def forget(self, model: ServedModel) -> None:
        """Delete a fine-tuned model or checkpoint: its record, its files and its grants."""
        ...


class ModelCatalog:
    def __init__(self, records: ModelRecords, fleet: EngineFleet, started_at: int) -> None:
        self.records = records
        self.fleet = fleet
        self.bases = {name: ServedModel(name, started_at, "system", base=name) for name in fleet.names}

    @property
    def base_names(self) -> list[str]:
        return list(self.bases)

    def list(self, org_id: str) -> ModelList:
        """Base models, the organization's own models, then those shared with it."""
        models = [
            *self.bases.values(),
            *self.records.fine_tuned(org_id),
            *self.records.checkpoints(org_id),
            *self.records.shared_with(org_id),
        ]
        return ModelList(data=[m.to_wire() for m in models])

    def served_base(self, name: str) -> ServedModel | None:
        """The base model `name` (every organization may use it), or None."""
        return self.bases.get(name)

    def owns(self, org_id: str, name: str) -> bool:
        """Whether `name` is one of the organization's own fine-tuned models or checkpoints."""
        return bool(self.records.fine_tuned(org_id, name) or self.records.checkpoints(org_id, name))

    def resolve(self, org_id: str, name: str, own_only: bool = False) -> ServedModel:
        """The model `name` as the organization sees it (with `own_only`, not one shared with it);
        404 model_not_found if it has no such model."""
        if name in self.bases:
            return self.bases[name]
        found = self.records.fine_tuned(org_id, name) or self.records.checkpoints(org_id, name)
        if not found and not own_only:
            found = self.records.shared_with(org_id, name)
        if found:
            return found[0]
        raise NotFound(
            f"The model `{name}` does not exist or you do not have access to it. Base models served "
            f"here: {', '.join(self.bases)}; GET /v1/models lists yours too.",
            param="model",
            code="model_not_found",
        )

    def trainable(self, org_id: str, name: str) -> ServedModel:
        """What a fine-tuning job on `name` trains from: a served base model, or one of the
        organization's fine-tuned models or checkpoints (training continues from its adapter,
        on its base). 400 model_not_available otherwise."""
        try:
            return self.resolve(org_id, name)
        except NotFound:
            raise InvalidRequest(
                f"Model {name} is not available for fine-tuning or does not exist. "
                f"Models this server can fine-tune: {', '.join(self.bases)}, "
                "or one of your fine-tuned models.",
                param="model",
                code="model_not_available",
            ) from None

    async def delete(self, org_id: str, name: str) -> DeletedObject:
        """Unload a fine-tuned model (or checkpoint) from the engine and free its disk."""
        if name in self.bases:
            raise PermissionDenied(
                f"The model `{name}` is a base model served by this server; it cannot be deleted.",
                param="model",
                code="model_not_deletable",
            )
        model = await asyncio.to_thread(self.resolve, org_id, name, True)  # only its owner deletes it
        await self.fleet.get(model.base).unload_everywhere(model.name)
        await asyncio.to_thread(self.records.forget, model)
        return DeletedObject(id=name, object="model", deleted=True)
