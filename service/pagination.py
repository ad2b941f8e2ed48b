"""Cursor pagination as OpenAI does it: `after` is the id of the last item of the previous page."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def paginate(
    items: Sequence[T], after: str | None, limit: int, id_of: Callable[[T], str]
) -> tuple[list[T], bool]:
    """The page after the item whose id is `after` (from the start when None), and whether more follow.

    An unknown `after` gives an empty page, so a client paging with a stale cursor stops.
    """
    start = 0
    if after is not None:
        ids = [id_of(item) for item in items]
        start = ids.index(after) + 1 if after in ids else len(items)
    rest = items[start:]
    return list(rest[:limit]), len(rest) > limit
