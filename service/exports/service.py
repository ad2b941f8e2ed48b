"""Exports as the API offers them (POST, GET /v1/models/{model}/exports[/{id}]), for one
organization: its own fine-tuned models and checkpoints only, at most `max_unfinished` exports
queued or running at once."""

from __future__ import annotations

from collections.abc import Callable

from service.errors import QuotaExceeded
from service.exports.sources import ExportSources
from service.exports.store import ExportStore, to_wire
from service.protocol.common import CursorPage
from service.protocol.exports import CreateExportRequest, ModelExport


class ModelExports:
    def __init__(
        self, store: ExportStore, sources: ExportSources, wake_runner: Callable[[], None], max_unfinished: int
    ) -> None:
        self.store = store
        self.sources = sources
        self.wake_runner = wake_runner
        self.max_unfinished = max_unfinished

    def create(self, org_id: str, model: str, request: CreateExportRequest) -> ModelExport:
        self.sources.resolve(org_id, model)  # 404 unless the organization's own; 400 for a base model
        unfinished = self.store.count_unfinished(org_id)
        if unfinished >= self.max_unfinished:
            raise QuotaExceeded(
                f"Your organization has {unfinished} exports queued or running, the most allowed; "
                "wait for one to finish.",
                param="model",
            )
        row = self.store.insert(org_id, model, request.format)
        self.wake_runner()
        return to_wire(row)

    def retrieve(self, org_id: str, model: str, export_id: str) -> ModelExport:
        """Also once the model is deleted: its exports (and their files) stay."""
        return to_wire(self.store.get(org_id, model, export_id))

    def list(self, org_id: str, model: str, limit: int, after: str | None) -> CursorPage[ModelExport]:
        """Newest first; 404 for a model that the organization neither has nor exported."""
        rows = self.store.of_model(org_id, model)
        if not rows:
            self.sources.resolve(org_id, model)
        return self.store.page(rows, limit, after)
