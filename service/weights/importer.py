"""POST /v1/models/import: a PEFT adapter zip becomes a model of the caller's organization,
`ft:{base}:{org}:{suffix}:{id}` as a trained one would be, once it is known to be servable.

In order: the suffix and base model (404 for a name the organization cannot see, 400 for one that
is not a served base), the zip unpacked safely (unpack.py) into a scratch folder, the storage quota,
the adapter checked against the base (servability.py), its files stored under
`{storage root}/imports/{id}/` and its row added, then the adapter loaded into the engine, as a
finished job's is: a model that answers as soon as it is listed. Should the engine still refuse it,
the import is undone (400)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from service.catalog import ModelCatalog
from service.config import Settings
from service.engine.fleet import EngineFleet
from service.errors import AdapterLoadError, EngineUnreachable, InvalidRequest, NotFound, QuotaExceeded
from service.files import FileStore, display_name
from service.ids import new_id
from service.jobs.naming import fine_tuned_model_name, is_valid_suffix
from service.protocol.models import Model
from service.store import ImportedModelRow
from service.weights.imports import ImportedModels, served_model
from service.weights.servability import base_model_shape, check_servable
from service.weights.unpack import unpack_adapter
from trainer import storage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImportLimits:
    max_bytes: int  # the archive, and what its kept files decompress to
    max_lora_rank: int  # the engine's --max-lora-rank
    scratch: Path  # where archives are unpacked and checked, on this host's disk

    @classmethod
    def from_settings(cls, settings: Settings) -> ImportLimits:
        return cls(
            max_bytes=settings.import_max_bytes,
            max_lora_rank=settings.engine_max_lora_rank,
            scratch=settings.data_dir.resolve() / "cache" / "imports",
        )


class AdapterImporter:
    def __init__(
        self,
        catalog: ModelCatalog,
        fleet: EngineFleet,
        imports: ImportedModels,
        files: FileStore,
        limits: ImportLimits,
    ) -> None:
        self.catalog = catalog
        self.fleet = fleet
        self.imports = imports
        self.files = files  # for the organization's storage quota
        self.limits = limits
        _sweep(limits.scratch)

    async def import_adapter(
        self, org_id: str, archive: BinaryIO, filename: str | None, base_model: str, suffix: str | None
    ) -> Model:
        row = await asyncio.to_thread(
            self._store, org_id, archive, filename or "adapter.zip", base_model, suffix
        )
        try:
            await self.fleet.get(row.base_model).preload(row.model_name, row.path)
        except AdapterLoadError as exc:
            # The engine's words may name server paths: they go to the log, not to the caller.
            logger.warning("The engine refused imported adapter %s: %s", row.model_name, exc)
            await asyncio.to_thread(self.imports.forget, served_model(row))
            raise InvalidRequest(
                "The serving engine could not load this adapter although it passed the checks; "
                "it was not imported.",
                param="file",
                code="adapter_not_servable",
            ) from None
        except EngineUnreachable:
            # The engine is restarting, which says nothing about the adapter: it loads on first use.
            logger.warning("Engine unavailable when %s was imported; it will load on demand", row.model_name)
        return Model(id=row.model_name, created=row.created_at, owned_by=row.organization_id)

    def _store(
        self, org_id: str, archive: BinaryIO, filename: str, base_model: str, suffix: str | None
    ) -> ImportedModelRow:
        """Check, store and record the adapter (blocking); its row."""
        if suffix is not None and not is_valid_suffix(suffix):
            raise InvalidRequest(
                "suffix may contain only letters, digits, '-', '_' and '.' (1 to 64 characters).",
                param="suffix",
            )
        base = self._base(org_id, base_model)
        bytes_left = self.files.check_quota(org_id)
        self.limits.scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.limits.scratch, prefix="import-") as scratch:
            folder = Path(scratch) / "adapter"
            size = unpack_adapter(archive, folder, self.limits.max_bytes)
            if bytes_left is not None and size > bytes_left:
                raise QuotaExceeded(
                    f"This adapter ({size:,} bytes) would exceed your organization's storage quota "
                    f"({bytes_left:,} bytes left); delete files or models to make room.",
                    param="file",
                )
            shape = base_model_shape(base, self.fleet.get(base).model_path)
            check_servable(folder, shape, self.limits.max_lora_rank)
            import_id = new_id("ftimport")
            row = ImportedModelRow(
                id=import_id,
                organization_id=org_id,
                created_at=int(time.time()),
                model_name=fine_tuned_model_name(base, org_id.removeprefix("org-"), suffix),
                base_model=base,
                suffix=suffix,
                filename=display_name(filename),
                bytes=size,
                path=self.imports.location_of(import_id),
            )
            storage.put(folder, row.path)
        try:
            self.imports.add(row)
        except BaseException:
            storage.remove(row.path)
            raise
        return row

    def _base(self, org_id: str, name: str) -> str:
        """The served base model `name`: 404 when the organization has no model of that name (as
        chat would answer), 400 when it is one of its fine-tuned models."""
        try:
            model = self.catalog.resolve(org_id, name)
        except NotFound as exc:
            raise NotFound(exc.message, param="base_model", code=exc.code) from None
        if model.adapter_path is not None:
            raise InvalidRequest(
                f"base_model must be a base model served here ({', '.join(self.catalog.base_names)}); "
                f"`{name}` is a fine-tuned model.",
                param="base_model",
            )
        return model.base


def _sweep(scratch: Path, older_than_s: float = 3600) -> None:
    """Remove what imports cut short by a gateway's death left in the scratch folder (an import
    in progress is younger than this, whichever gateway on this disk runs it)."""
    if not scratch.is_dir():
        return
    stale = time.time() - older_than_s
    for entry in scratch.iterdir():
        if entry.stat().st_mtime < stale:
            shutil.rmtree(entry, ignore_errors=True)
