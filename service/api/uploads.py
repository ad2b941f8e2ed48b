from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from service.deps import ComponentsDep, PrincipalDep
from service.protocol.uploads import CompleteUploadRequest, CreateUploadRequest, Upload, UploadPart

router = APIRouter(tags=["uploads"])


@router.post("/uploads")
def create_upload(c: ComponentsDep, who: PrincipalDep, body: CreateUploadRequest) -> Upload:
    """Start a file sent in parts; it expires (with its parts) unless completed within the hour."""
    return c.uploads.create(who.organization_id, body)


@router.post("/uploads/{upload_id}/parts")
def add_upload_part(
    c: ComponentsDep, who: PrincipalDep, upload_id: str, data: Annotated[UploadFile, File()]
) -> UploadPart:
    """One part (multipart field `data`), streamed to storage from the spooled request body."""
    return c.uploads.add_part(who.organization_id, upload_id, data.file)


@router.post("/uploads/{upload_id}/complete")
def complete_upload(
    c: ComponentsDep, who: PrincipalDep, upload_id: str, body: CompleteUploadRequest
) -> Upload:
    """Join the parts, in the order of `part_ids`, into a file (the answer's `file`)."""
    return c.uploads.complete(who.organization_id, upload_id, body.part_ids, body.md5)


@router.post("/uploads/{upload_id}/cancel")
def cancel_upload(c: ComponentsDep, who: PrincipalDep, upload_id: str) -> Upload:
    return c.uploads.cancel(who.organization_id, upload_id)
