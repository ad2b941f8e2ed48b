from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, model_validator

Item = TypeVar("Item", bound=BaseModel)


class CursorPage(BaseModel, Generic[Item]):
    """The cursor-list envelope. `has_more` is always present: the SDK pages on it (`after=<last id>`)."""

    object: Literal["list"] = "list"
    data: list[Item]
    has_more: bool


class IdCursorPage(CursorPage[Item], Generic[Item]):
    """A cursor list that also names its first and last ids (OpenAI's files and checkpoints)."""

    first_id: str | None = None
    last_id: str | None = None

    @model_validator(mode="after")
    def _bounds(self) -> "IdCursorPage[Item]":
        if self.data:
            self.first_id = getattr(self.data[0], "id", None)
            self.last_id = getattr(self.data[-1], "id", None)
        return self


class DeletedObject(BaseModel):
    id: str
    object: str
    deleted: bool
