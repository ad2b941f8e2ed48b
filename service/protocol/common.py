from typing import Generic, Literal, TypeVar

from pydantic import BaseModel

Item = TypeVar("Item", bound=BaseModel)


class CursorPage(BaseModel, Generic[Item]):
    """The cursor-list envelope. `has_more` is always present: the SDK pages on it (`after=<last id>`)."""

    object: Literal["list"] = "list"
    data: list[Item]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None


class DeletedObject(BaseModel):
    id: str
    object: str
    deleted: bool
