"""Reading and validating OpenAI chat-format JSONL. Pure Python (no torch), so the gateway can run
the same checks while a job is `validating_files`.

Errors use OpenAI's codes and 1-based positions: "Example 12, message 3: ...".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIN_TRAINING_EXAMPLES = 10
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_PREFIX = "The job failed due to an invalid {kind} file. Invalid file format."


class DataValidationError(Exception):
    def __init__(self, code: str, message: str, param: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


@dataclass
class ChatExample:
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None


@dataclass
class PreferenceExample:
    """A DPO pair: the conversation so far, and a preferred and a non-preferred assistant reply."""

    messages: list[dict[str, Any]]
    preferred: dict[str, Any]
    non_preferred: dict[str, Any]
    tools: list[dict[str, Any]] | None = None


Fail = Callable[[str], DataValidationError]


def _records(path: Path, param: str) -> tuple[list[dict[str, Any]], Fail]:
    """The file's JSON objects, one per non-empty line, and the error maker for this file."""
    kind = "validation" if param == "validation_file" else "training"
    code = f"invalid_{kind}_file"

    def fail(detail: str) -> DataValidationError:
        return DataValidationError(code, f"{_PREFIX.format(kind=kind)} {detail}", param)

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise fail("The file is not UTF-8 text; expected JSON Lines (one JSON object per line).") from None
    records = []
    for number, line in enumerate((ln for ln in text.splitlines() if ln.strip()), start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise fail(f"Example {number}: not valid JSON ({exc.msg}).") from None
        if not isinstance(record, dict):
            raise fail(f"Example {number}: expected a JSON object.")
        records.append(record)
    if param == "training_file" and len(records) < MIN_TRAINING_EXAMPLES:
        raise DataValidationError(
            "invalid_n_examples",
            f"Training file has {len(records)} example(s), but must have at least "
            f"{MIN_TRAINING_EXAMPLES} examples",
            param,
        )
    return records, fail


def _is_preference(record: dict[str, Any]) -> bool:
    return "messages" not in record and any(k in record for k in (*_PREFERRED, *_NON_PREFERRED, "input"))


def load_examples(path: Path, method: str, param: str = "training_file") -> list[Any]:
    """The examples of a file for a job's method (`supervised` or `dpo`)."""
    if method == "dpo":
        return load_preference_examples(path, param)
    return load_chat_examples(path, param)


def load_chat_examples(path: Path, param: str = "training_file") -> list[ChatExample]:
    """Parse and check every line; raise DataValidationError on the first problem."""
    records, fail = _records(path, param)
    examples = []
    for number, record in enumerate(records, start=1):
        if _is_preference(record):
            raise fail(
                f"Example {number} is in the preference (DPO) format, but the job's method is 'supervised'."
            )
        examples.append(_check_chat_record(record, number, fail))
    return examples


_PREFERRED = ("preferred_output", "preferred_completion")
_NON_PREFERRED = ("non_preferred_output", "non_preferred_completion")


def load_preference_examples(path: Path, param: str = "training_file") -> list[PreferenceExample]:
    """OpenAI's DPO format: `input.messages`, `preferred_output`, `non_preferred_output` (or the
    older `preferred_completion` / `non_preferred_completion`), each output one assistant message."""
    records, fail = _records(path, param)
    examples = []
    for number, record in enumerate(records, start=1):
        if "messages" in record:
            raise fail(
                f"Example {number} is in the chat format (fine-tune-chat), but the job's method is 'dpo': "
                "preference examples need 'input', 'preferred_output' and 'non_preferred_output'."
            )
        prompt = record.get("input")
        if not isinstance(prompt, dict):
            raise fail(f"Example {number}: 'input' must be an object with 'messages'.")
        messages = _check_messages(prompt.get("messages"), number, fail, require_assistant=False)
        outputs = []
        for keys in (_PREFERRED, _NON_PREFERRED):
            value = next((record[k] for k in keys if k in record), None)
            if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict):
                raise fail(f"Example {number}: '{keys[0]}' must be a list of exactly one assistant message.")
            if value[0].get("role") != "assistant" or not isinstance(value[0].get("content"), str):
                raise fail(f"Example {number}: '{keys[0]}' must hold an assistant message with text content.")
            outputs.append(value[0])
        examples.append(PreferenceExample(messages, outputs[0], outputs[1], prompt.get("tools")))
    return examples


def _check_chat_record(record: dict[str, Any], number: int, fail: Fail) -> ChatExample:
    messages = _check_messages(record.get("messages"), number, fail, require_assistant=True)
    tools = record.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise fail(f"Example {number}: 'tools' must be a list.")
    return ChatExample(messages=messages, tools=tools)


def _check_messages(messages: Any, number: int, fail: Fail, require_assistant: bool) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise fail(f"Example {number}: 'messages' must be a non-empty list.")
    has_assistant = False
    for position, message in enumerate(messages, start=1):
        where = f"Example {number}, message {position}"
        if not isinstance(message, dict):
            raise fail(f"{where}: expected an object.")
        role = message.get("role")
        if role not in ROLES:
            raise fail(f"{where}: unrecognized role {role!r}; expected one of {sorted(ROLES)}.")
        content = message.get("content")
        if role == "assistant":
            has_assistant = True
            if content is None and not message.get("tool_calls") and not message.get("function_call"):
                raise fail(f"{where}: an assistant message needs 'content' or 'tool_calls'.")
            if message.get("weight", 1) not in (0, 1):
                raise fail(f"{where}: 'weight' must be 0 or 1.")
        elif "weight" in message:
            raise fail(f"{where}: 'weight' is only allowed on assistant messages.")
        if content is not None and not isinstance(content, str | list):
            raise fail(f"{where}: 'content' must be a string.")
        if isinstance(content, list):
            raise fail(f"{where}: content parts (images, audio) are not supported; use a string.")
        if role != "assistant" and content is None:
            raise fail(f"{where}: missing 'content'.")
    if require_assistant and not has_assistant:
        raise fail(f"Example {number}: no assistant message; each example needs at least one.")
    return messages
