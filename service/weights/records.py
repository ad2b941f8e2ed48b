"""The catalog's records (service/catalog.py's `ModelRecords`) from several sources at once: the
job pipeline's fine-tuned models and checkpoints, and imported adapters (imports.py)."""

from __future__ import annotations

from collections.abc import Sequence

from service.catalog import ModelRecords, ServedModel


class CombinedRecords:
    def __init__(self, sources: Sequence[ModelRecords]) -> None:
        self.sources = list(sources)

    def fine_tuned(self, org_id: str, name: str | None = None) -> list[ServedModel]:
        return [model for source in self.sources for model in source.fine_tuned(org_id, name)]

    def checkpoints(self, org_id: str, name: str | None = None) -> list[ServedModel]:
        return [model for source in self.sources for model in source.checkpoints(org_id, name)]

    def shared_with(self, org_id: str, name: str | None = None) -> list[ServedModel]:
        return [model for source in self.sources for model in source.shared_with(org_id, name)]

    def forget(self, model: ServedModel) -> None:
        """Forgotten by the source that records it (model names are unique across sources)."""
        for source in self.sources:
            if source.fine_tuned(model.owned_by, model.name) or source.checkpoints(
                model.owned_by, model.name
            ):
                source.forget(model)
                return
