"""What an export reads, found out: the base model's local folder and the adapter's stored location
of one of the organization's own fine-tuned models or checkpoints (through the model catalog); and
whether the machine has the memory to merge them now."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from service.catalog import ModelCatalog
from service.engine.fleet import EngineFleet
from service.errors import InvalidRequest, NotFound
from service.jobs.capacity import GIB, weights_bytes
from trainer.memory import available_ram_bytes

# Beyond the weights themselves: the Python runtime, torch and transformers, peft's LoRA layers.
_OVERHEAD_BYTES = 1 * GIB


@dataclass(frozen=True)
class ExportSource:
    base_path: Path  # a local folder (hub ids are resolved into the hub cache at start-up)
    adapter: str  # a storage location (trainer/storage.py)


class ExportSources:
    def __init__(self, catalog: ModelCatalog, fleet: EngineFleet) -> None:
        self.catalog = catalog
        self.fleet = fleet

    def resolve(self, org_id: str, model: str) -> ExportSource:
        """The sources of the organization's own fine-tuned model or checkpoint `model`: 404 for
        anything else it cannot see or that is only shared with it, 400 for a base model."""
        if model in self.catalog.base_names:
            raise InvalidRequest(
                f"`{model}` is a base model: only fine-tuned models and their checkpoints can be exported.",
                param="model",
                code="model_not_exportable",
            )
        served = self.catalog.resolve(org_id, model, own_only=True)
        if served.adapter_path is None or served.base not in self.fleet.names:
            raise InvalidRequest(
                f"The model `{model}` cannot be exported: its base model is not served here.",
                param="model",
                code="model_not_exportable",
            )
        return ExportSource(self.fleet.get(served.base).model_path, served.adapter_path)

    def locate(self, org_id: str, model: str) -> ExportSource | None:
        """The sources, or None once the model is gone (deleted)."""
        try:
            return self.resolve(org_id, model)
        except (NotFound, InvalidRequest):
            return None


def memory_shortfall(base_path: Path, required_gib: float | None) -> str | None:
    """Why an export would not fit in this machine's memory now, or None when it does. An export
    merges on the CPU (trainer/export.py), so it needs RAM, about its base's weights; the GPU's
    memory is the engine's and the trainers' (service/jobs/capacity.py)."""
    required = (
        int(required_gib * GIB) if required_gib is not None else weights_bytes(base_path) + _OVERHEAD_BYTES
    )
    free = available_ram_bytes()
    if free >= required:
        return None
    return f"an export needs about {required / GIB:.1f} GiB of memory and {free / GIB:.1f} GiB is free"
