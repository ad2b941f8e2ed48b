"""The Uploads API's objects and requests, as OpenAI's SDK has them (`openai/types/upload.py`,
`upload_create_params.py`, `upload_complete_params.py`, `uploads/upload_part.py`)."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.protocol.files import FileObject, UploadablePurpose

UploadStatus = Literal["pending", "completed", "cancelled", "expired"]
MAX_PARTS = 10_000  # per upload: S3's most parts in one object; 8 GB needs 128 parts of 64 MB


class Upload(BaseModel):
    id: str
    object: Literal["upload"] = "upload"
    bytes: int
    created_at: int
    expires_at: int
    filename: str
    purpose: str
    status: UploadStatus
    file: FileObject | None = None  # the file it became, in the answer to complete


class UploadPart(BaseModel):
    id: str
    object: Literal["upload.part"] = "upload.part"
    created_at: int
    upload_id: str


class ExpiresAfter(BaseModel):
    """For the file the upload becomes, as in files.create (checked by parse_expires_after)."""

    model_config = ConfigDict(extra="ignore")

    anchor: str
    seconds: int


class CreateUploadRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    bytes: int = Field(ge=0)  # the upper bound is a setting (upload_max_bytes_total)
    filename: str = Field(min_length=1, max_length=1024)
    mime_type: str = Field(min_length=1, max_length=255)
    purpose: UploadablePurpose
    expires_after: ExpiresAfter | None = None


class CompleteUploadRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    part_ids: list[Annotated[str, Field(max_length=64)]] = Field(max_length=MAX_PARTS)
    md5: str | None = Field(default=None, max_length=64)
