"""The Uploads API (`client.uploads`): a file of up to 8 GB sent in parts of up to 64 MB, then
completed into an ordinary file (OpenAI's limits by default; settings in service/config.py).

- A part is streamed to storage as it arrives (`uploads/<upload id>/<part id>`, read from the
  request's spooled temporary file) and counts against the organization's stored-bytes quota at
  once (FileStore.check_quota adds pending uploads' `received_bytes`): unfinished uploads cannot
  fill the disk.
- Completing streams the parts, in the order given, into the new file's location (on S3 a multipart
  upload fed by the parts' reads, service/upload_streams.py), with the md5 computed on the way; only
  then, in one transaction, the file row is written, the part rows deleted and the upload marked
  completed. A completion that fails changes nothing: the upload stays pending.
- Races (a part, a completion, a cancellation, the expiry), expiry and the sweep of expired
  uploads: service/upload_lifecycle.py."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import func, select, update

from service import upload_lifecycle as lifecycle
from service.config import Settings
from service.errors import InvalidRequest, QuotaExceeded
from service.files import FileStore, display_name, new_row, parse_expires_after
from service.files import to_wire as file_to_wire
from service.ids import new_id
from service.protocol.files import FileObject
from service.protocol.uploads import MAX_PARTS, CreateUploadRequest, Upload, UploadPart
from service.store import Database, UploadPartRow, UploadRow
from service.upload_lifecycle import PENDING, not_pending
from service.upload_streams import CappedReader, JoinedReader
from trainer import storage

logger = logging.getLogger(__name__)

MAX_PENDING_PER_ORG = 100  # unfinished uploads of one organization at once (each is a row)
_MD5 = re.compile(r"[0-9a-fA-F]{32}")


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int  # of one upload
    part_max_bytes: int
    expiry_s: int

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadLimits:
        return cls(settings.upload_max_bytes_total, settings.upload_part_max_bytes, settings.upload_expiry_s)


class UploadStore:
    def __init__(self, db: Database, files: FileStore, blobs: str, limits: UploadLimits) -> None:
        """`blobs`: the storage location (a folder, or s3://bucket/prefix/uploads) of the parts."""
        self.db = db
        self.files = files
        self.blobs = blobs
        self.limits = limits
        files.on_purge.append(self.expire_stale)  # unfinished uploads expire with the files

    def create(self, org_id: str, request: CreateUploadRequest) -> Upload:
        expires = request.expires_after
        file_expires_after_s = parse_expires_after(expires.anchor, expires.seconds) if expires else None
        if request.bytes > (limit := self.limits.max_bytes):
            raise InvalidRequest(
                f"An upload may hold at most {limit} bytes.", param="bytes", code="file_too_large"
            )
        bytes_left = self.files.check_quota(org_id)  # refuses an organization with all its files
        if bytes_left is not None and request.bytes > bytes_left:
            raise _over_quota(bytes_left)
        now = int(time.time())
        row = UploadRow(
            id=new_id("upload", separator="_"),
            organization_id=org_id,
            created_at=now,
            expires_at=now + self.limits.expiry_s,
            filename=display_name(request.filename),
            purpose=request.purpose,
            bytes=request.bytes,
            status=PENDING,
            received_bytes=0,
            file_expires_after_s=file_expires_after_s,
        )
        with self.db.session() as session:
            pending = UploadRow.organization_id == org_id, UploadRow.status == PENDING
            if (session.scalar(select(func.count()).where(*pending)) or 0) >= MAX_PENDING_PER_ORG:
                raise QuotaExceeded(
                    f"Your organization has {MAX_PENDING_PER_ORG} unfinished uploads, the most allowed; "
                    "complete or cancel one first.",
                    param="bytes",
                )
            session.add(row)
        return to_wire(row)

    def add_part(self, org_id: str, upload_id: str, stream: BinaryIO) -> UploadPart:
        upload = self._pending(org_id, upload_id)
        with self.db.session() as session:
            n_parts = session.scalar(select(func.count()).where(UploadPartRow.upload_id == upload_id)) or 0
        if n_parts >= MAX_PARTS:
            raise InvalidRequest(f"An upload may have at most {MAX_PARTS} parts.", param="data")
        part_max, upload_max = self.limits.part_max_bytes, self.limits.max_bytes
        caps: list[tuple[int, Exception]] = [
            (part_max, InvalidRequest(f"A part may hold at most {part_max} bytes.", param="data")),
            (
                upload_max - upload.received_bytes,
                InvalidRequest(f"An upload's parts may hold at most {upload_max} bytes.", param="data"),
            ),
        ]
        bytes_left = self.files.check_quota(org_id)
        if bytes_left is not None:
            caps.append((bytes_left, _over_quota(bytes_left)))
        part = UploadPartRow(
            id=new_id("part", separator="_"), upload_id=upload_id, created_at=int(time.time())
        )
        location = storage.join(self._folder(upload_id), part.id)
        counted = CappedReader(stream, caps)
        try:
            storage.write_stream(location, counted)  # nothing is left there when a cap is passed
        except Exception:
            self._pending(org_id, upload_id)  # failed as the upload ended (its folder removed): a 400
            raise
        part.bytes = counted.size
        try:
            with self.db.session() as session:
                # Counted only while the upload is still pending: a part that lost a race with the
                # upload's completion, cancellation or expiry is refused and removed.
                grown = session.execute(
                    update(UploadRow)
                    .where(UploadRow.id == upload_id, UploadRow.status == PENDING)
                    .values(received_bytes=UploadRow.received_bytes + part.bytes)
                )
                if not grown.rowcount:  # type: ignore[attr-defined]
                    raise not_pending(upload_id)
                session.add(part)
        except BaseException:
            storage.remove(location)
            raise
        return UploadPart(id=part.id, created_at=part.created_at, upload_id=upload_id)

    def complete(self, org_id: str, upload_id: str, part_ids: list[str], md5: str | None) -> Upload:
        upload = self._pending(org_id, upload_id)
        if len(set(part_ids)) != len(part_ids):
            raise InvalidRequest("part_ids names a part more than once.", param="part_ids")
        if md5 is not None and not _MD5.fullmatch(md5):
            raise InvalidRequest("md5 must be 32 hexadecimal digits.", param="md5")
        with self.db.session() as session:
            query = select(UploadPartRow.id, UploadPartRow.bytes).where(UploadPartRow.upload_id == upload_id)
            stored: dict[str, int] = {part_id: size for part_id, size in session.execute(query)}
        unknown = next((part_id for part_id in part_ids if part_id not in stored), None)
        if unknown is not None:
            raise InvalidRequest(f"Upload {upload_id} has no part {unknown!r}.", param="part_ids")
        size = sum(stored[part_id] for part_id in part_ids)
        if size != upload.bytes:
            raise InvalidRequest(
                f"The parts given hold {size} bytes; the upload was created for {upload.bytes}.",
                param="part_ids",
            )
        self.files.check_quota(org_id)  # the bytes were counted as they came; this is for the file count
        file = self._assemble(upload, part_ids, md5)
        storage.remove(self._folder(upload_id))
        upload.status, upload.file_id = "completed", file.id
        return to_wire(upload, file)

    def _assemble(self, upload: UploadRow, part_ids: list[str], md5: str | None) -> FileObject:
        """The parts, in order, streamed into a new file: its bytes, then in one transaction its row,
        the upload completed and the part rows gone. Whatever fails leaves the upload as it was."""
        file_id = new_id("file")
        location = self.files.location_of(file_id)
        joined = JoinedReader(storage.join(self._folder(upload.id), part_id) for part_id in part_ids)
        try:
            storage.write_stream(location, joined)
        except Exception:
            # A part missing because the upload ended meanwhile is a 400; anything else the server's.
            self._pending(upload.organization_id, upload.id)
            raise
        finally:
            joined.close()
        try:
            if md5 is not None and joined.md5 != md5.lower():
                raise InvalidRequest(f"The parts' md5 is {joined.md5}, not the md5 given.", param="md5")
            # `expires_after` counts from the file's creation, now, as with files.create.
            org_id, expires_after_s = upload.organization_id, upload.file_expires_after_s
            row = new_row(file_id, org_id, upload.filename, upload.purpose, joined.size, expires_after_s)
            with self.db.session() as session:
                if not lifecycle.end(session, upload.id, "completed", file_id):
                    raise not_pending(upload.id)
                session.add(row)
        except BaseException:
            storage.remove(location)
            raise
        return file_to_wire(row)

    def cancel(self, org_id: str, upload_id: str) -> Upload:
        upload = self._pending(org_id, upload_id)
        with self.db.session() as session:
            if not lifecycle.end(session, upload_id, "cancelled"):
                raise not_pending(upload_id)
        storage.remove(self._folder(upload_id))
        upload.status = "cancelled"
        return to_wire(upload)

    def expire_stale(self) -> int:
        """Expires pending uploads past their time (their parts removed); returns how many."""
        expired = lifecycle.expire_stale(self.db, self.blobs)
        if expired:
            logger.info("Expired %d unfinished upload(s)", expired)
        return expired

    def _pending(self, org_id: str, upload_id: str) -> UploadRow:
        return lifecycle.pending(self.db, self.blobs, org_id, upload_id)

    def _folder(self, upload_id: str) -> str:
        return lifecycle.parts_folder(self.blobs, upload_id)


def _over_quota(bytes_left: int) -> QuotaExceeded:
    return QuotaExceeded(
        f"This upload would exceed your organization's storage quota ({bytes_left:,} bytes left); "
        "delete files to make room.",
        param="bytes",
    )


def to_wire(row: UploadRow, file: FileObject | None = None) -> Upload:
    return Upload(
        id=row.id,
        bytes=row.bytes,
        created_at=row.created_at,
        expires_at=row.expires_at,
        filename=row.filename,
        purpose=row.purpose,
        status=row.status,
        file=file,
    )
