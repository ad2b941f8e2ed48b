"""Durable state: the database (rows) and the blob folder (file bytes, adapters)."""

from service.store.database import Database
from service.store.tables import (
    ApiKeyRow,
    CheckpointPermissionRow,
    CheckpointRow,
    EventRow,
    FileRow,
    GraderTokenRow,
    ImportedModelRow,
    JobRow,
    ModelExportRow,
    UploadPartRow,
    UploadRow,
    WebhookDeliveryRow,
    WebhookEndpointRow,
)

__all__ = [
    "ApiKeyRow",
    "CheckpointPermissionRow",
    "CheckpointRow",
    "Database",
    "EventRow",
    "FileRow",
    "GraderTokenRow",
    "ImportedModelRow",
    "JobRow",
    "ModelExportRow",
    "UploadPartRow",
    "UploadRow",
    "WebhookDeliveryRow",
    "WebhookEndpointRow",
]
