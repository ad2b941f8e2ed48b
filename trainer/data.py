"""Reading and validating OpenAI chat-format and preference (DPO) JSONL. Pure Python (no torch).

Files are untrusted: every field may hold any JSON value, so each check looks at the type before the
value, and every problem ends as a DataValidationError naming the example ("Example 12, message 3:
..."), never another exception. Messages never name server paths.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.jsonl import Record, RecordError, read_records

MIN_TRAINING_EXAMPLES = 10
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_PREFIX = "The job failed due to an invalid {kind} file. Invalid file format."
_PREFERRED = ("preferred_output", "preferred_completion")
_NON_PREFERRED = ("non_preferred_output", "non_preferred_completion")


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


@dataclass
class ReinforcementExample:
    """An RFT prompt: the conversation up to the model's turn, and the row's other fields (the
    grader's `item`: reference answers and anything else its templates name)."""

    messages: list[dict[str, Any]]
    item: dict[str, Any]
    tools: list[dict[str, Any]] | None = None  # always None: per-row tools are refused for now


Example = ChatExample | PreferenceExample | ReinforcementExample
Fail = Callable[[str], DataValidationError]


def error_maker(param: str) -> Fail:
    """Builds this file's errors: `invalid_training_file` or `invalid_validation_file`."""
    kind = "validation" if param == "validation_file" else "training"

    def fail(detail: str) -> DataValidationError:
        return DataValidationError(f"invalid_{kind}_file", f"{_PREFIX.format(kind=kind)} {detail}", param)

    return fail


def iter_examples(path: Path, method: str, param: str = "training_file") -> Iterator[tuple[Example, int]]:
    """Each example of a file for a job's method (`supervised`, `dpo` or `reinforcement`) with the
    size of its line, checked as it is read; a training file with too few examples raises once the
    end is reached."""
    fail = error_maker(param)
    checks: dict[str, Callable[[Record, Fail], Example]] = {
        "dpo": _check_preference_record,
        "reinforcement": _check_reinforcement_record,
    }
    check = checks.get(method, _check_chat_record)
    count = 0
    try:
        for record in read_records(path):
            yield check(record, fail), record.size
            count += 1
    except RecordError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"The file could not be read ({exc.strerror or type(exc).__name__}).") from None
    if param == "training_file" and count < MIN_TRAINING_EXAMPLES:
        raise DataValidationError(
            "invalid_n_examples",
            f"Training file has {count} example(s), but must have at least {MIN_TRAINING_EXAMPLES} examples",
            param,
        )


def load_examples(path: Path, method: str, param: str = "training_file") -> list[Any]:
    """The examples of a file for a job's method; raise DataValidationError on the first problem."""
    return [example for example, _size in iter_examples(path, method, param)]


def load_chat_examples(path: Path, param: str = "training_file") -> list[ChatExample]:
    return load_examples(path, "supervised", param)


def load_preference_examples(path: Path, param: str = "training_file") -> list[PreferenceExample]:
    """OpenAI's DPO format: `input.messages`, `preferred_output`, `non_preferred_output` (or the
    older `preferred_completion` / `non_preferred_completion`), each output one assistant message."""
    return load_examples(path, "dpo", param)


def load_reinforcement_examples(path: Path, param: str = "training_file") -> list[ReinforcementExample]:
    """OpenAI's RFT format: `messages` ending with the user's turn, plus any other top-level fields,
    kept for the grader (`{{item.field}}`)."""
    return load_examples(path, "reinforcement", param)


def _check_chat_record(record: Record, fail: Fail) -> ChatExample:
    value, where = record.value, record.where
    if "messages" not in value and any(k in value for k in (*_PREFERRED, *_NON_PREFERRED, "input")):
        raise fail(f"{where} is in the preference (DPO) format, but the job's method is 'supervised'.")
    messages = _check_messages(value.get("messages"), where, fail, require_assistant=True)
    return ChatExample(messages=messages, tools=_check_tools(value.get("tools"), where, fail))


def _check_preference_record(record: Record, fail: Fail) -> PreferenceExample:
    value, where = record.value, record.where
    if "messages" in value:
        raise fail(
            f"{where} is in the chat format (fine-tune-chat), but the job's method is 'dpo': "
            "preference examples need 'input', 'preferred_output' and 'non_preferred_output'."
        )
    prompt = value.get("input")
    if not isinstance(prompt, dict):
        raise fail(f"{where}: 'input' must be an object with 'messages'.")
    messages = _check_messages(prompt.get("messages"), where, fail, require_assistant=False)
    tools = _check_tools(prompt.get("tools"), where, fail)
    outputs = []
    for keys in (_PREFERRED, _NON_PREFERRED):
        output = next((value[k] for k in keys if k in value), None)
        if not isinstance(output, list) or len(output) != 1 or not isinstance(output[0], dict):
            raise fail(f"{where}: '{keys[0]}' must be a list of exactly one assistant message.")
        if output[0].get("role") != "assistant" or not isinstance(output[0].get("content"), str):
            raise fail(f"{where}: '{keys[0]}' must hold an assistant message with text content.")
        outputs.append(output[0])
    return PreferenceExample(messages, outputs[0], outputs[1], tools)


def _check_reinforcement_record(record: Record, fail: Fail) -> ReinforcementExample:
    value, where = record.value, record.where
    if "messages" not in value and "input" in value:
        raise fail(f"{where} is in the preference (DPO) format, but the job's method is 'reinforcement'.")
    messages = _check_messages(value.get("messages"), where, fail, require_assistant=False)
    if messages[-1]["role"] != "user":
        raise fail(
            f"{where}: the last message must be a user message (the prompt the model answers), not "
            f"{describe(messages[-1]['role'])}; put reference answers in other fields, for the grader."
        )
    if "tools" in value:
        raise fail(f"{where}: 'tools' is not supported in reinforcement fine-tuning examples yet.")
    return ReinforcementExample(messages, {k: v for k, v in value.items() if k != "messages"})


def _check_messages(messages: Any, where: str, fail: Fail, require_assistant: bool) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise fail(f"{where}: 'messages' must be a non-empty list.")
    for position, message in enumerate(messages, start=1):
        _check_message(message, f"{where}, message {position}", fail)
    if require_assistant and not any(m["role"] == "assistant" for m in messages):
        raise fail(f"{where}: no assistant message; each example needs at least one.")
    return messages


def _check_message(message: Any, where: str, fail: Fail) -> None:
    if not isinstance(message, dict):
        raise fail(f"{where}: expected an object.")
    role = message.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise fail(f"{where}: unrecognized role {describe(role)}; expected one of {sorted(ROLES)}.")
    content = message.get("content")
    if isinstance(content, list):
        raise fail(f"{where}: content parts (images, audio) are not supported; use a string.")
    if content is not None and not isinstance(content, str):
        raise fail(f"{where}: 'content' must be a string, got {describe(content)}.")
    for key in ("name", "tool_call_id"):
        if key in message and not isinstance(message[key], str):
            raise fail(f"{where}: '{key}' must be a string.")
    if role != "assistant":
        if content is None:
            raise fail(f"{where}: missing 'content'.")
        if "weight" in message:
            raise fail(f"{where}: 'weight' is only allowed on assistant messages.")
        return
    calls = message.get("tool_calls")
    if calls is not None:
        _check_tool_calls(calls, where, fail)
    legacy_call = message.get("function_call")
    if legacy_call is not None and not _is_named_function(legacy_call):
        raise fail(f"{where}: 'function_call' must be an object with a string 'name'.")
    if content is None and not calls and not legacy_call:
        raise fail(f"{where}: an assistant message needs 'content' or 'tool_calls'.")
    weight = message.get("weight", 1)
    if type(weight) not in (int, float) or weight not in (0, 1):
        raise fail(f"{where}: 'weight' must be 0 or 1.")


def _check_tool_calls(calls: Any, where: str, fail: Fail) -> None:
    if not isinstance(calls, list):
        raise fail(f"{where}: 'tool_calls' must be a list.")
    for number, call in enumerate(calls, start=1):
        function = call.get("function") if isinstance(call, dict) else None
        if not _is_named_function(function):
            raise fail(f"{where}, tool call {number}: expected an object whose 'function' has a 'name'.")
        assert isinstance(function, dict)
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, str | dict):
            raise fail(f"{where}, tool call {number}: 'arguments' must be a JSON string.")


def _check_tools(tools: Any, where: str, fail: Fail) -> list[dict[str, Any]] | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise fail(f"{where}: 'tools' must be a list.")
    for number, tool in enumerate(tools, start=1):
        if not isinstance(tool, dict) or ("function" in tool and not _is_named_function(tool["function"])):
            raise fail(f"{where}, tool {number}: expected an object whose 'function' has a 'name'.")
    return tools


def _is_named_function(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("name"), str)


def describe(value: Any) -> str:
    """A value as an error message shows it: short text quoted and cut, anything else by its type."""
    if isinstance(value, str):
        return repr(value[:40]) + ("..." if len(value) > 40 else "")
    if value is None:
        return "(missing)"
    kinds = {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}
    return f"({kinds.get(type(value), type(value).__name__)})"
