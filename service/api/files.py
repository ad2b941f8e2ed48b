from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import StreamingResponse

from service.deps import ComponentsDep, PrincipalDep
from service.files import parse_expires_after
from service.protocol.common import DeletedObject, IdCursorPage
from service.protocol.files import FileObject, UploadablePurpose

router = APIRouter(tags=["files"])


@router.post("/files")
def create_file(
    c: ComponentsDep,
    who: PrincipalDep,
    file: Annotated[UploadFile, File()],
    purpose: Annotated[UploadablePurpose, Form()],
    expires_anchor: Annotated[str | None, Form(alias="expires_after[anchor]")] = None,
    expires_seconds: Annotated[int | None, Form(alias="expires_after[seconds]")] = None,
) -> FileObject:
    """Upload a file (multipart); it is stored as given and `processed` at once."""
    expires_after = parse_expires_after(expires_anchor, expires_seconds)
    return c.files.create(who.organization_id, file.file, file.filename or "upload", purpose, expires_after)


@router.get("/files")
def list_files(
    c: ComponentsDep,
    who: PrincipalDep,
    purpose: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
) -> IdCursorPage[FileObject]:
    return c.files.list(who.organization_id, purpose, limit, order, after)


@router.get("/files/{file_id}")
def retrieve_file(c: ComponentsDep, who: PrincipalDep, file_id: str) -> FileObject:
    return c.files.retrieve(who.organization_id, file_id)


@router.delete("/files/{file_id}")
def delete_file(c: ComponentsDep, who: PrincipalDep, file_id: str) -> DeletedObject:
    return c.files.delete(who.organization_id, file_id)


@router.get("/files/{file_id}/content", response_class=StreamingResponse)
def file_content(c: ComponentsDep, who: PrincipalDep, file_id: str) -> StreamingResponse:
    """The exact bytes that were uploaded, streamed from storage."""
    row = c.files.get(who.organization_id, file_id)
    return StreamingResponse(
        c.files.read(row), media_type="application/octet-stream", headers={"content-length": str(row.bytes)}
    )
