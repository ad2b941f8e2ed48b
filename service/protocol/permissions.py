"""Checkpoint permissions, as OpenAI's SDK has them (`client.fine_tuning.checkpoints.permissions`,
`openai/types/fine_tuning/checkpoints/`). OpenAI's projects are opentune's organizations: a
`project_id` is an organization's id, `org-{name}`."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CheckpointPermission(BaseModel):
    id: str
    object: Literal["checkpoint.permission"] = "checkpoint.permission"
    created_at: int
    project_id: str


class DeletedCheckpointPermission(BaseModel):
    id: str
    object: Literal["checkpoint.permission"] = "checkpoint.permission"
    deleted: bool = True


class CreateCheckpointPermissionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    project_ids: list[str] = Field(min_length=1, max_length=100)
