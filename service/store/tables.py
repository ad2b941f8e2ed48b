"""Table definitions. Column names follow the wire objects so the mapping stays obvious."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class FileRow(Base):
    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    filename: Mapped[str] = mapped_column(String(512))
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="processed")
    expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger, index=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    model: Mapped[str] = mapped_column(String(512))  # as requested: a base or a fine-tuned model
    # The served base model it trains on (and its fine-tuned model runs on), resolved at creation.
    base_model: Mapped[str] = mapped_column(String(512))
    training_file: Mapped[str] = mapped_column(String(64))
    validation_file: Mapped[str | None] = mapped_column(String(64), nullable=True)
    suffix: Mapped[str | None] = mapped_column(String(64), nullable=True)
    seed: Mapped[int] = mapped_column(BigInteger)
    # The method as requested ({"type": ..., "hyperparameters": {...}} with "auto" kept) ...
    method_type: Mapped[str] = mapped_column(String(32))
    requested_hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    # ... and as resolved to numbers when the job starts running.
    hyperparameters: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    n_training_examples: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Tokens in the longest training example, counted when the files were validated (in a child
    # process, trainer/inspect_files.py): batch-size planning at start never re-reads the file.
    longest_example_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    job_metadata: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    integrations: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # What a method has besides hyperparameters: reinforcement's grader and response_format.
    method_options: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Chosen at creation (checkpoint names derive from it); shown as `fine_tuned_model` on success.
    model_name: Mapped[str] = mapped_column(String(700), unique=True)
    fine_tuned_model: Mapped[str | None] = mapped_column(String(700), unique=True, nullable=True)
    adapter_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    model_deleted_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    finished_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    trained_tokens: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    estimated_finish: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    result_files: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Times a trainer that died without reporting was started again (service/jobs/outcomes.py).
    trainer_retries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # While running: the gateway supervising it, and until when (unix time) unless it renews the
    # lease; another gateway adopts the job after that (service/jobs/leases.py).
    owner: Mapped[str | None] = mapped_column(String(256), nullable=True)
    lease_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The executor's handle of its current trainer (a Ray submission id), to re-attach to it.
    trainer_ref: Mapped[str | None] = mapped_column(String(256), nullable=True)


class CheckpointRow(Base):
    """A per-epoch checkpoint; usable as a model under `fine_tuned_model_checkpoint`."""

    __tablename__ = "checkpoints"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    organization_id: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    step_number: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    fine_tuned_model_checkpoint: Mapped[str] = mapped_column(String(720), unique=True)
    base_model: Mapped[str] = mapped_column(String(512))
    path: Mapped[str] = mapped_column(Text)


class ApiKeyRow(Base):
    """An API key of an organization; only its SHA-256 digest is stored."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(128), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the key, to tell keys apart in listings without revealing them.
    hint: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int] = mapped_column(BigInteger)
    # Set by `opentune keys revoke`; the row stays, so the server knows a key existed (fails closed).
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class EventRow(Base):
    __tablename__ = "job_events"

    # `seq` orders events (newest first on the wire); created_at alone is only second-resolution.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    level: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(16), default="message")
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class WebhookEndpointRow(Base):
    """Where an organization wants its events delivered (service/webhooks/endpoints.py)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(256))
    url: Mapped[str] = mapped_column(String(2048))
    event_types: Mapped[list[str]] = mapped_column(JSON)
    # `whsec_...`: kept as given, since signing needs it (an HMAC key cannot be stored hashed).
    signing_secret: Mapped[str] = mapped_column(String(128))
    # After a rotation that keeps the old secret for a while: deliveries are signed with both.
    previous_secret: Mapped[str | None] = mapped_column(String(128), nullable=True)
    previous_secret_expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class WebhookDeliveryRow(Base):
    """The outbox: one event for one endpoint, written in the transaction that ended the job, and
    sent (and retried) by service/webhooks/dispatcher.py until the endpoint takes it or it expires."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the `webhook-id` header
    endpoint_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    organization_id: Mapped[str] = mapped_column(String(128))
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)  # the exact body, the same on every attempt
    created_at: Mapped[int] = mapped_column(BigInteger)
    # pending until delivered (a 2xx answer) or failed (attempts exhausted).
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, index=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(512), nullable=True)
    finished_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The gateway sending it right now, until when: another gateway takes it over after that.
    owner: Mapped[str | None] = mapped_column(String(256), nullable=True)
    lease_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class UploadRow(Base):
    """A file sent in parts (`client.uploads`, service/uploads.py) until it is completed into a file."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    filename: Mapped[str] = mapped_column(String(512))
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger)  # as declared at creation
    # pending until completed, cancelled or expired.
    status: Mapped[str] = mapped_column(String(16), index=True)
    # Bytes of the parts stored so far: they count against the organization's quota while pending.
    received_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # `expires_after` for the file it becomes; and, once completed, that file.
    file_expires_after_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    file_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class UploadPartRow(Base):
    __tablename__ = "upload_parts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    bytes: Mapped[int] = mapped_column(BigInteger)


class CheckpointPermissionRow(Base):
    """A fine-tuned model or checkpoint its organization shares with another
    (`client.fine_tuning.checkpoints.permissions`; service/jobs/permissions.py)."""

    __tablename__ = "checkpoint_permissions"
    __table_args__ = (UniqueConstraint("model_name", "organization_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(720), index=True)
    owner_organization_id: Mapped[str] = mapped_column(String(128))
    organization_id: Mapped[str] = mapped_column(String(128), index=True)  # the one it is shared with
    created_at: Mapped[int] = mapped_column(BigInteger)


class ImportedModelRow(Base):
    """A LoRA adapter an organization uploaded as a model of its own (POST /v1/models/import;
    service/weights/imports.py). Its files are stored at `path`, checked servable on `base_model`."""

    __tablename__ = "imported_models"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    model_name: Mapped[str] = mapped_column(String(700), unique=True)  # ft:{base}:{org}:{suffix}:{id}
    base_model: Mapped[str] = mapped_column(String(512))
    suffix: Mapped[str | None] = mapped_column(String(64), nullable=True)
    filename: Mapped[str] = mapped_column(String(512))  # the uploaded archive's name, for its model card
    bytes: Mapped[int] = mapped_column(BigInteger)  # stored: counted against the storage quota
    path: Mapped[str] = mapped_column(Text)


class ModelExportRow(Base):
    """A fine-tuned model's weights exported as a file of its organization (POST
    /v1/models/{model}/exports; service/exports/). While running, one gateway runs it under a lease."""

    __tablename__ = "model_exports"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(128), index=True)
    model: Mapped[str] = mapped_column(String(720), index=True)
    format: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)  # queued, running, succeeded, failed
    created_at: Mapped[int] = mapped_column(BigInteger)
    finished_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The file the zip becomes, chosen when an attempt starts (its bytes are written at the file's
    # location, so nothing is copied); shown only once the export succeeded.
    file_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # starts so far
    owner: Mapped[str | None] = mapped_column(String(256), nullable=True)
    lease_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class GraderTokenRow(Base):
    """A credential a reinforcement job's trainer calls the organization's chat completions with, for
    its model graders (service/grader_tokens.py). Only its SHA-256 digest is stored; it is accepted
    only while its job is running or paused, and until a newer token of the job replaces it."""

    __tablename__ = "grader_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
