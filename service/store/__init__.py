"""Durable state: the database (rows) and the blob folder (file bytes, adapters)."""

from service.store.database import Database
from service.store.tables import (
    ApiKeyRow,
    CheckpointRow,
    EventRow,
    FileRow,
    JobRow,
    WebhookDeliveryRow,
    WebhookEndpointRow,
)

__all__ = [
    "ApiKeyRow",
    "CheckpointRow",
    "Database",
    "EventRow",
    "FileRow",
    "JobRow",
    "WebhookDeliveryRow",
    "WebhookEndpointRow",
]
