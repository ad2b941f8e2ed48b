"""Reading an untrusted JSON Lines file one record at a time.

Files come from users, so any byte sequence must end as a clear `RecordError` naming the line, and
never as another exception (a TypeError or RecursionError here once stopped the gateway's scheduler
for every organization). Lines are read one by one, so memory follows the longest line, not the file.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Deeper JSON than any chat example needs (a tool's JSON Schema nests a few tens of levels at most);
# bounded so that nothing downstream (json.dumps, chat templates) recurses without limit.
MAX_NESTING_DEPTH = 100


class RecordError(Exception):
    """A line that is not one usable JSON object; `where` names it ("Example 3" or "Example 3 (line 5)")."""

    def __init__(self, where: str, detail: str) -> None:
        super().__init__(f"{where}: {detail}")
        self.where = where
        self.detail = detail


@dataclass(frozen=True)
class Record:
    where: str  # how messages name this record
    value: dict[str, Any]
    size: int  # bytes on its line: the longest lines hold the longest examples


def read_records(path: Path) -> Iterator[Record]:
    """The file's JSON objects, one per non-empty line. Examples are numbered among non-empty lines
    (as OpenAI's messages do); the file's line number is added when it differs.

    Raises RecordError for a bad line and OSError when the file cannot be read."""
    number = 0
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if line_number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            if not raw.strip():
                continue
            number += 1
            where = f"Example {number}" if number == line_number else f"Example {number} (line {line_number})"
            yield Record(where, _parse(raw, where), len(raw))


def _parse(raw: bytes, where: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(where, f"not UTF-8 text (invalid byte at position {exc.start + 1}).") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise RecordError(where, f"JSON nested more than {MAX_NESTING_DEPTH} levels deep.") from None
    except json.JSONDecodeError as exc:
        raise RecordError(where, f"not valid JSON ({exc.msg}).") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        reason = str(exc).split(":")[0]
        raise RecordError(where, f"not valid JSON ({reason}).") from None
    if not isinstance(value, dict):
        raise RecordError(where, "expected a JSON object.")
    _check_values(value, where)
    return value


def _check_values(value: dict[str, Any], where: str) -> None:
    """Bounded nesting, and text that is Unicode (a JSON escape like "\\ud800" decodes to half a
    character, which the tokenizer and the dataset writer reject later). Iterative: no recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and not _is_unicode(item):
                raise RecordError(where, "text with an invalid Unicode escape (a lone surrogate).")
        elif isinstance(item, dict | list):
            if depth > MAX_NESTING_DEPTH:
                raise RecordError(where, f"JSON nested more than {MAX_NESTING_DEPTH} levels deep.")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
