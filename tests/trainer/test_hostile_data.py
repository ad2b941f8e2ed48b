"""Untrusted training files: any value in any field, broken bytes, huge lines and deep nesting all
end as a DataValidationError naming the example, never as another exception."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainer.data import DataValidationError, load_examples

CHAT = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
PAIR = {
    "input": {"messages": [{"role": "user", "content": "q"}], "tools": []},
    "preferred_output": [{"role": "assistant", "content": "good"}],
    "non_preferred_output": [{"role": "assistant", "content": "bad"}],
}
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def _file(tmp_path: Path, lines: list[bytes], name: str = "t.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _good(record: dict[str, Any], count: int = 12) -> list[bytes]:
    return [json.dumps(record).encode()] * count


def _error(path: Path, method: str = "supervised") -> DataValidationError:
    with pytest.raises(DataValidationError) as err:
        load_examples(path, method)
    assert str(path.parent) not in err.value.message
    return err.value


@pytest.mark.parametrize(
    "message",
    [
        {"role": [], "content": "x"},
        {"role": {"a": 1}, "content": "x"},
        {"role": 3, "content": "x"},
        {"role": None, "content": "x"},
        {"role": "user", "content": 7},
        {"role": "user", "content": {"text": "x"}},
        {"role": "user", "content": None},
        {"role": "assistant", "content": "x", "weight": [1]},
        {"role": "assistant", "content": "x", "weight": float("nan")},
        {"role": "assistant", "tool_calls": "call"},
        {"role": "assistant", "tool_calls": [{"function": "f"}]},
        {"role": "assistant", "tool_calls": [{"function": {"name": ["f"]}}]},
        {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": 3}}]},
        {"role": "assistant", "function_call": []},
        {"role": "user", "content": "x", "name": 5},
        ["not", "an", "object"],
    ],
)
def test_wrong_types_in_messages_fail_cleanly(tmp_path: Path, message: Any) -> None:
    lines = _good(CHAT)
    lines[4] = json.dumps({"messages": [message, CHAT["messages"][1]]}).encode()
    error = _error(_file(tmp_path, lines))
    assert error.code == "invalid_training_file" and "Example 5, message 1" in error.message


def test_ten_lines_of_list_roles_fail_with_invalid_training_file(tmp_path: Path) -> None:
    lines = _good({"messages": [{"role": [], "content": "x"}]}, count=10)
    error = _error(_file(tmp_path, lines))
    assert error.code == "invalid_training_file"
    assert "Example 1, message 1: unrecognized role (a list)" in error.message


def test_100000_deep_nesting(tmp_path: Path) -> None:
    for deep in (b"[" * 100_000, b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"):
        error = _error(_file(tmp_path, [*_good(CHAT, 3), deep]))
        assert "Example 4: JSON nested more than 100 levels deep" in error.message


def test_nesting_inside_an_otherwise_valid_example(tmp_path: Path) -> None:
    nested: Any = "x"
    for _ in range(300):
        nested = [nested]
    record = {**CHAT, "tools": [{"type": "function", "function": {"name": "f", "parameters": nested}}]}
    assert "nested more than" in _error(_file(tmp_path, _good(record))).message


def test_invalid_utf8_in_the_middle_names_the_line(tmp_path: Path) -> None:
    lines = _good(CHAT)
    lines[6] = json.dumps(CHAT).encode().replace(b'"q"', b'"q\xff\xfe"')
    error = _error(_file(tmp_path, lines))
    assert "Example 7: not UTF-8 text" in error.message


def test_lone_surrogate_escape(tmp_path: Path) -> None:
    lines = _good(CHAT)
    lines[2] = json.dumps(CHAT).encode().replace(b'"q"', b'"\\ud800"')
    assert "Example 3: text with an invalid Unicode escape" in _error(_file(tmp_path, lines)).message


def test_huge_integer(tmp_path: Path) -> None:
    lines = _good(CHAT)
    lines[1] = b'{"messages": ' + b"9" * 10_000 + b"}"
    assert "Example 2: not valid JSON" in _error(_file(tmp_path, lines)).message


def test_blank_lines_keep_example_numbers_and_name_the_line(tmp_path: Path) -> None:
    lines = [*_good(CHAT, 3), b"", b"  ", b'{"messages": [{"role": 1}]}']
    error = _error(_file(tmp_path, lines))
    assert "Example 4 (line 6), message 1" in error.message


def test_a_50_mb_single_line(tmp_path: Path) -> None:
    huge = b'{"messages": [{"role": "user", "content": "' + b"a" * (50 * 2**20)
    error = _error(_file(tmp_path, [*_good(CHAT, 2), huge]))
    assert "Example 3: not valid JSON" in error.message
    assert len(error.message) < 500  # the content is never echoed back


def test_a_missing_file_names_no_path(tmp_path: Path) -> None:
    error = _error(tmp_path / "gone.jsonl")
    assert error.code == "invalid_training_file" and "could not be read" in error.message


def test_hostile_preference_records(tmp_path: Path) -> None:
    hostile = [
        {**PAIR, "input": []},
        {**PAIR, "input": {"messages": [{"role": [], "content": "x"}]}},
        {**PAIR, "input": {"messages": [{"role": "user", "content": "x"}], "tools": "t"}},
        {**PAIR, "preferred_output": [{"role": "assistant", "content": ["x"]}]},
        {**PAIR, "non_preferred_output": {"role": "assistant"}},
    ]
    for record in hostile:
        lines = _good(PAIR)
        lines[3] = json.dumps(record).encode()
        error = _error(_file(tmp_path, lines), "dpo")
        assert error.code == "invalid_training_file" and "Example 4" in error.message


def _with_value(record: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(record))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


CHAT_FIELDS = [
    ("messages",),
    ("messages", 0),
    ("messages", 0, "role"),
    ("messages", 0, "content"),
    ("messages", 1, "role"),
    ("messages", 1, "content"),
    ("messages", 1, "weight"),
    ("messages", 1, "tool_calls"),
    ("messages", 1, "name"),
    ("tools",),
]
PAIR_FIELDS = [("input",), ("input", "messages"), ("input", "messages", 0), ("input", "messages", 0, "role"),
               ("input", "messages", 0, "content"), ("input", "tools"), ("preferred_output",),
               ("preferred_output", 0), ("preferred_output", 0, "role"), ("preferred_output", 0, "content"),
               ("non_preferred_output",), ("non_preferred_output", 0, "content")]  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(CHAT_FIELDS), value=JSON_VALUES)
def test_any_value_in_any_chat_field(tmp_path: Path, field: tuple[Any, ...], value: Any) -> None:
    lines = _good(CHAT)
    lines[5] = json.dumps(_with_value(CHAT, field, value)).encode()
    try:
        examples = load_examples(_file(tmp_path, lines), "supervised")
    except DataValidationError as exc:
        assert exc.code == "invalid_training_file" and "Example 6" in exc.message
    else:
        assert len(examples) == 12


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(PAIR_FIELDS), value=JSON_VALUES)
def test_any_value_in_any_preference_field(tmp_path: Path, field: tuple[Any, ...], value: Any) -> None:
    lines = _good(PAIR)
    lines[5] = json.dumps(_with_value(PAIR, field, value)).encode()
    try:
        examples = load_examples(_file(tmp_path, lines), "dpo")
    except DataValidationError as exc:
        assert exc.code == "invalid_training_file" and "Example 6" in exc.message
    else:
        assert len(examples) == 12


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record=JSON_VALUES, method=st.sampled_from(["supervised", "dpo"]))
def test_any_json_value_as_a_whole_line(tmp_path: Path, record: Any, method: str) -> None:
    lines = _good(PAIR if method == "dpo" else CHAT)
    lines[0] = json.dumps(record).encode()
    try:
        load_examples(_file(tmp_path, lines), method)
    except DataValidationError as exc:
        assert exc.code == "invalid_training_file" and "Example 1" in exc.message


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200))
def test_any_bytes_as_a_line(tmp_path: Path, raw: bytes) -> None:
    lines = [*_good(CHAT, 3), raw.replace(b"\n", b" ")]
    try:
        load_examples(_file(tmp_path, lines), "supervised")
    except DataValidationError as exc:
        assert exc.code in ("invalid_training_file", "invalid_n_examples")
