"""Exports of fine-tuned models (an opentune extension, under /v1/models/{model}/exports): the
model's weights with its adapter merged in, as a zip file of the organization."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ExportFormat = Literal["merged"]
ExportStatus = Literal["queued", "running", "succeeded", "failed"]


class CreateExportRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format: ExportFormat = Field(
        description="`merged`: the base model's weights, in their own dtype, with the adapter merged in, "
        "as safetensors shards with the config and the tokenizer, zipped."
    )


class ExportError(BaseModel):
    code: str
    message: str


class ModelExport(BaseModel):
    id: str
    object: Literal["model.export"] = "model.export"
    model: str
    format: ExportFormat
    status: ExportStatus
    file_id: str | None = Field(
        default=None, description="Once succeeded: the zip, a file of purpose `fine-tune-results`."
    )
    error: ExportError | None = None
    created_at: int
    finished_at: int | None = None
