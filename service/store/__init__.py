"""Durable state: the database (rows) and the blob folder (file bytes, adapters)."""

from service.store.database import Database
from service.store.tables import EventRow, FileRow, JobRow

__all__ = ["Database", "EventRow", "FileRow", "JobRow"]
