from typing import Literal, get_args

from pydantic import BaseModel

FilePurpose = Literal[
    "assistants",
    "assistants_output",
    "batch",
    "batch_output",
    "fine-tune",
    "fine-tune-results",
    "vision",
    "user_data",
    "evals",
]
UploadablePurpose = Literal["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]
UPLOADABLE_PURPOSES: tuple[str, ...] = get_args(UploadablePurpose)


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: FilePurpose
    status: Literal["uploaded", "processed", "error"] = "processed"
    status_details: str | None = None
    expires_at: int | None = None
