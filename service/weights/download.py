"""GET /v1/models/{model}/adapter: a fine-tuned model's (or checkpoint's, or imported model's) LoRA
adapter as a zip that peft's `PeftModel.from_pretrained` and `vllm serve --lora-modules` take as
is once unzipped: adapter_config.json (naming the base by its public name) and
adapter_model.safetensors at the top level, the tokenizer with its chat template, and a model card.

Only the owning organization downloads: a model shared with another organization (checkpoint
permissions) is lent for use, chat and training from it, not handed over (403 for it)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

from sqlalchemy import select

from service.catalog import ModelCatalog, ServedModel
from service.engine.fleet import EngineFleet
from service.errors import InvalidRequest, NotFound, PermissionDenied
from service.jobs.checkpoints import CheckpointStore
from service.jobs.store import JobStore
from service.store import EventRow
from service.weights.archive import ArchiveMember, stream_zip
from service.weights.imports import ImportedModels
from service.weights.layout import ADAPTER_CONFIG, ADAPTER_WEIGHTS, MODEL_CARD, TOKENIZER_FILES
from service.weights.model_card import (
    ModelCardFacts,
    checkpoint_origin,
    imported_origin,
    render,
    trained_origin,
    training_details,
)
from trainer import storage

_CONFIG_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class AdapterArchive:
    filename: str  # safe for a content-disposition header
    chunks: Iterator[bytes]


class AdapterDownloads:
    def __init__(
        self,
        catalog: ModelCatalog,
        jobs: JobStore,
        checkpoints: CheckpointStore,
        imports: ImportedModels,
        fleet: EngineFleet,
        base_references: dict[str, str],
    ) -> None:
        """`base_references`: each served base model's public name (layout.base_reference)."""
        self.catalog = catalog
        self.jobs = jobs
        self.checkpoints = checkpoints
        self.imports = imports
        self.fleet = fleet
        self.base_references = base_references

    def archive(self, org_id: str, name: str) -> AdapterArchive:
        """The model's adapter archive, ready to stream (blocking: it lists storage and reads the
        adapter's config; the members are read as the archive is sent)."""
        model = self.catalog.resolve(org_id, name)
        if model.adapter_path is None:
            raise InvalidRequest(
                f"`{name}` is a base model: only fine-tuned models, checkpoints and imported models "
                "have an adapter to download.",
                param="model",
                code="model_not_downloadable",
            )
        if not self.catalog.owns(org_id, name):
            raise PermissionDenied(
                f"`{name}` is shared with your organization for use; only the organization that owns "
                "it can download its weights.",
                param="model",
                code="model_not_downloadable",
            )
        location = model.adapter_path
        present = set(storage.children(location))
        if not {ADAPTER_CONFIG, ADAPTER_WEIGHTS} <= present:
            raise NotFound(f"The adapter files of `{name}` are no longer stored.", param="model")
        config = _read_config(location)
        reference = self.base_references.get(model.base, model.base)
        config["base_model_name_or_path"] = reference
        card = render(
            ModelCardFacts(
                model=name,
                base_served_name=model.base,
                base_reference=reference,
                lora=config,
                origin=self._origin(org_id, model),
                details=self._details(org_id, model),
            )
        )
        members = [
            _bytes_member(ADAPTER_CONFIG, json.dumps(config, indent=2, sort_keys=True).encode() + b"\n"),
            ArchiveMember(
                ADAPTER_WEIGHTS, partial(storage.iter_bytes, storage.join(location, ADAPTER_WEIGHTS)), False
            ),
            *self._tokenizer_members(model.base, location, present),
            _bytes_member(MODEL_CARD, card.encode()),
        ]
        return AdapterArchive(filename=archive_filename(name), chunks=stream_zip(members, model.created))

    def _tokenizer_members(self, base: str, location: str, present: set[str]) -> list[ArchiveMember]:
        """The adapter's own tokenizer files (at `location`, where `present` are); the base model's
        when it has none (what its trainer loaded: trainer/loop.py takes the base's as is)."""
        source, names = location, present & TOKENIZER_FILES
        if not names:
            source = str(self.fleet.get(base).model_path)
            names = set(storage.children(source)) & TOKENIZER_FILES
        return [ArchiveMember(n, partial(storage.iter_bytes, storage.join(source, n))) for n in sorted(names)]

    def _origin(self, org_id: str, model: ServedModel) -> str:
        if model.job_id is None:
            row = self.imports.by_name(org_id, model.name)
            return imported_origin(row.filename if row else "an archive", model.created)
        if model.checkpoint_id is not None:
            checkpoint = self.checkpoints.by_name(org_id, model.name)
            step = checkpoint.step_number if checkpoint else 0
            return checkpoint_origin(model.job_id, step, model.created)
        return trained_origin(model.job_id, self.jobs.get(None, model.job_id).finished_at)

    def _details(self, org_id: str, model: ServedModel) -> dict[str, str]:
        if model.job_id is None:
            return {}
        job = self.jobs.get(None, model.job_id)
        hyperparameters = dict(job.hyperparameters or job.requested_hyperparameters)
        if model.checkpoint_id is not None:
            checkpoint = self.checkpoints.by_name(org_id, model.name)
            metrics = {"step": checkpoint.step_number, **checkpoint.metrics} if checkpoint else None
            return training_details(job.method_type, hyperparameters, None, metrics)
        return training_details(
            job.method_type, hyperparameters, job.trained_tokens, self._final_metrics(job.id)
        )

    def _final_metrics(self, job_id: str) -> dict[str, object] | None:
        """The job's last metrics event (its last step's losses)."""
        query = (
            select(EventRow.data)
            .where(EventRow.job_id == job_id, EventRow.type == "metrics")
            .order_by(EventRow.seq.desc())
            .limit(1)
        )
        with self.jobs.db.session() as session:
            data = session.scalar(query)
        return dict(data) if data else None


def _bytes_member(name: str, data: bytes) -> ArchiveMember:
    return ArchiveMember(name, lambda: iter([data]))


def _read_config(location: str) -> dict[str, object]:
    data = b""
    for chunk in storage.iter_bytes(storage.join(location, ADAPTER_CONFIG)):
        data += chunk
        if len(data) > _CONFIG_MAX_BYTES:
            break
    try:
        config = json.loads(data)
    except (ValueError, RecursionError):
        config = None
    if not isinstance(config, dict):
        raise InvalidRequest("This model's adapter_config.json cannot be read.", param="model")
    return config


def archive_filename(model: str) -> str:
    """`ft:tiny:acme:bot:AbC123xy` -> `ft-tiny-acme-bot-AbC123xy.zip`: only characters that need no
    quoting in a content-disposition header."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-.")[:200]
    return f"{stem or 'adapter'}.zip"
