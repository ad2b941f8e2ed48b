"""Uploaded files: bytes in storage under their id (never the user's filename), rows in the db.

Storage is the data folder or object storage (trainer/storage.py): an upload is streamed through
(to S3 as a multipart upload), with the size limit and the organization's quota checked as the
bytes pass, so the gateway never holds a whole file in memory."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import delete, func, or_, select

from service.config import Settings
from service.errors import InvalidRequest, NotFound, QuotaExceeded
from service.ids import new_id
from service.pagination import paginate
from service.protocol.common import DeletedObject, IdCursorPage
from service.protocol.files import UPLOADABLE_PURPOSES, FileObject
from service.store import Database, FileRow, UploadRow
from trainer import storage

MAX_FILE_BYTES = 512 * 1024 * 1024
_CHUNK = 1024 * 1024
EXPIRY_RANGE_S = (3600, 2_592_000)


def parse_expires_after(anchor: str | None, seconds: int | None) -> int | None:
    """Seconds until expiry from `expires_after[anchor]` / `[seconds]`, as OpenAI (anchor created_at)."""
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidRequest("expires_after[anchor] must be 'created_at'.", param="expires_after.anchor")
    low, high = EXPIRY_RANGE_S
    if seconds is None or not low <= seconds <= high:
        raise InvalidRequest(
            f"expires_after[seconds] must be between {low} and {high}.", param="expires_after.seconds"
        )
    return seconds


@dataclass(frozen=True)
class StorageQuota:
    """What one organization may store (issue 9); files the server writes itself are counted but
    never refused."""

    max_files: int
    max_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> StorageQuota:
        return cls(max_files=settings.max_files_per_org, max_bytes=settings.max_stored_bytes_per_org)


class FileStore:
    def __init__(self, db: Database, blobs: str, quota: StorageQuota | None = None) -> None:
        """`blobs`: the storage location (a folder, or s3://bucket/prefix/files) of the bytes."""
        self.db = db
        self.blobs = blobs
        self.quota = quota  # None: no per-organization limit
        # Called with each file row removed (deleted or expired), e.g. to drop data derived from it.
        self.on_remove: list[Callable[[FileRow], None]] = []
        # Called with each purge of expired files (the scheduler's housekeeping, once a minute), e.g.
        # to expire unfinished uploads (service/uploads.py).
        self.on_purge: list[Callable[[], object]] = []
        # Bytes an organization stores outside files (imported adapters, service/weights/), each
        # called with its id: counted against its quota as files are.
        self.stored_elsewhere: list[Callable[[str], int]] = []

    def location_of(self, file_id: str) -> str:
        # Ids are generated here ([A-Za-z0-9-]), so this cannot leave the files folder.
        return storage.join(self.blobs, file_id)

    def create(
        self,
        org_id: str,
        stream: BinaryIO,
        filename: str,
        purpose: str,
        expires_after_s: int | None = None,
        internal: bool = False,
    ) -> FileObject:
        """Store a file; `internal` files (results the server writes) may use output purposes."""
        if not internal and purpose not in UPLOADABLE_PURPOSES:
            raise InvalidRequest(
                f"Invalid purpose '{purpose}'. Expected one of: {', '.join(UPLOADABLE_PURPOSES)}.",
                param="purpose",
            )
        bytes_left = self.check_quota(org_id) if not internal else None
        file_id = new_id("file")
        location = self.location_of(file_id)
        counted = _LimitedReader(stream, bytes_left)
        storage.write_stream(location, counted)  # nothing is left there when the reader raises
        row = new_row(file_id, org_id, filename, purpose, counted.size, expires_after_s)
        try:
            with self.db.session() as session:
                session.add(row)
        except BaseException:
            storage.remove(location)
            raise
        return to_wire(row)

    def check_quota(self, org_id: str) -> int | None:
        """Refuses a new upload when the organization has as many files as allowed; else the bytes
        it may still store (None: no limit), the parts of its unfinished uploads (service/uploads.py)
        counted as stored. Count, then store: concurrent uploads may overshoot."""
        if self.quota is None:
            return None
        live = or_(FileRow.expires_at.is_(None), FileRow.expires_at > int(time.time()))
        with self.db.session() as session:
            query = select(func.count(), func.coalesce(func.sum(FileRow.bytes), 0))
            n_files, n_bytes = session.execute(query.where(FileRow.organization_id == org_id, live)).one()
            in_uploads = select(func.coalesce(func.sum(UploadRow.received_bytes), 0)).where(
                UploadRow.organization_id == org_id, UploadRow.status == "pending"
            )
            n_bytes += session.scalar(in_uploads) or 0
        n_bytes += sum(stored(org_id) for stored in self.stored_elsewhere)
        if n_files >= self.quota.max_files:
            raise QuotaExceeded(
                f"Your organization has {n_files} files, the most allowed is {self.quota.max_files}; "
                "delete files to upload more.",
                param="file",
            )
        return max(0, self.quota.max_bytes - int(n_bytes))

    def create_from(self, org_id: str, source: str, filename: str, purpose: str) -> FileObject:
        """Store a file the server produced itself (e.g. a trainer's result CSV, at a location)."""
        with storage.local_copy(source) as path, path.open("rb") as stream:
            return self.create(org_id, stream, filename, purpose, internal=True)

    def read(self, row: FileRow) -> Iterator[bytes]:
        """The file's bytes, streamed from storage."""
        return storage.iter_bytes(self.location_of(row.id))

    def get(self, org_id: str, file_id: str) -> FileRow:
        with self.db.session() as session:
            row = session.get(FileRow, file_id)
        if row is not None and _expired(row):
            self._remove(row)
            row = None
        if row is None or row.organization_id != org_id:
            raise NotFound(f"No such File object: {file_id}", param="id", code="file_not_found")
        return row

    def _remove(self, row: FileRow) -> None:
        with self.db.session() as session:
            session.execute(delete(FileRow).where(FileRow.id == row.id))
        storage.remove(self.location_of(row.id))
        for listener in self.on_remove:
            listener(row)

    # -- expiry: an expired file is gone for every purpose, read or not --------------------------

    def purge_expired(self) -> int:
        """Remove every expired file (row, bytes, derived data); returns how many."""
        with self.db.session() as session:
            query = select(FileRow).where(FileRow.expires_at.is_not(None), FileRow.expires_at <= time.time())
            rows = list(session.scalars(query))
        for row in rows:
            self._remove(row)
        for sweep in self.on_purge:
            sweep()
        return len(rows)

    def usable(self, org_id: str, file_id: str) -> bool:
        """Whether the organization's file still exists and has not expired (an expired one is
        removed on the spot)."""
        try:
            self.get(org_id, file_id)
        except NotFound:
            return False
        return True

    def retrieve(self, org_id: str, file_id: str) -> FileObject:
        return to_wire(self.get(org_id, file_id))

    def list(
        self, org_id: str, purpose: str | None, limit: int, order: str, after: str | None
    ) -> IdCursorPage[FileObject]:
        descending = order != "asc"
        with self.db.session() as session:
            query = select(FileRow).where(FileRow.organization_id == org_id)
            if purpose:
                query = query.where(FileRow.purpose == purpose)
            rows = [r for r in session.scalars(query) if not _expired(r)]
        rows.sort(key=lambda r: (r.created_at, r.id), reverse=descending)
        page, has_more = paginate(rows, after, limit, lambda r: r.id)
        return IdCursorPage[FileObject](data=[to_wire(r) for r in page], has_more=has_more)

    def delete(self, org_id: str, file_id: str) -> DeletedObject:
        self._remove(self.get(org_id, file_id))
        return DeletedObject(id=file_id, object="file", deleted=True)


class _LimitedReader:
    """Reads through to `stream`, counting, and raises (so the store keeps nothing) past the
    file size limit or the organization's bytes left (None: no quota)."""

    def __init__(self, stream: BinaryIO, bytes_left: int | None) -> None:
        self.stream = stream
        self.bytes_left = bytes_left
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.stream.read(size)
        self.size += len(chunk)
        if self.size > MAX_FILE_BYTES:
            raise InvalidRequest(
                f"File is too large: the limit is {MAX_FILE_BYTES // (1024 * 1024)} MB.",
                param="file",
                code="file_too_large",
            )
        if self.bytes_left is not None and self.size > self.bytes_left:
            raise QuotaExceeded(
                f"This file would exceed your organization's storage quota "
                f"({self.bytes_left:,} bytes left); delete files to make room.",
                param="file",
            )
        return chunk


def _expired(row: FileRow) -> bool:
    return row.expires_at is not None and row.expires_at <= time.time()


def new_row(
    file_id: str, org_id: str, filename: str, purpose: str, size: int, expires_after_s: int | None
) -> FileRow:
    """A file's row, once its bytes are stored at `location_of(file_id)` (uploads complete into one)."""
    now = int(time.time())
    return FileRow(
        id=file_id,
        organization_id=org_id,
        created_at=now,
        expires_at=now + expires_after_s if expires_after_s else None,
        filename=display_name(filename),
        purpose=purpose,
        bytes=size,
        status="processed",
    )


def display_name(filename: str) -> str:
    """The name shown back to the user: only the last path component, printable, bounded."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())[:255]
    return name or "upload"


def to_wire(row: FileRow) -> FileObject:
    return FileObject.model_validate(row, from_attributes=True)
