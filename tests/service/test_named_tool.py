"""A named tool_choice served as JSON output (service/engine/named_tool.py), without an engine."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from service.engine.named_tool import NamedToolCall

PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def _body(**fields: Any) -> dict[str, Any]:
    tools = [
        {"type": "function", "function": {"name": "other"}},
        {"type": "function", "function": {"name": "get_weather", "parameters": PARAMETERS}},
    ]
    return {"model": "m", "messages": [], "tools": tools} | fields


def test_a_named_choice_becomes_a_json_schema_request() -> None:
    body = _body(
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, parallel_tool_calls=False
    )
    named = NamedToolCall.rewrite(body)
    assert named is not None and named.name == "get_weather"
    assert body["tool_choice"] == "none" and "parallel_tool_calls" not in body
    assert body["response_format"]["json_schema"]["schema"] == PARAMETERS
    assert len(body["tools"]) == 2  # still in the prompt


def test_required_with_a_single_tool_names_it() -> None:
    body = _body(tool_choice="required")
    body["tools"] = body["tools"][1:]
    named = NamedToolCall.rewrite(body)
    assert named is not None and named.name == "get_weather" and body["tool_choice"] == "none"


@pytest.mark.parametrize(
    "choice", ["auto", "none", None, {"type": "function", "function": {"name": "missing"}}]
)
def test_other_choices_are_left_to_the_engine(choice: Any) -> None:
    body = _body(tool_choice=choice)
    assert NamedToolCall.rewrite(body) is None and body["tool_choice"] == choice


def test_the_content_of_each_choice_becomes_its_tool_call() -> None:
    named = NamedToolCall("get_weather")
    payload = {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": '{"city":"Paris"}'},
                "finish_reason": "stop",
            },
            {
                "index": 1,
                "message": {"role": "assistant", "content": '{"city":"Rome"}'},
                "finish_reason": "stop",
            },
        ]
    }
    done = named.complete(payload)
    calls = [c["message"]["tool_calls"][0] for c in done["choices"]]
    assert [c["function"] for c in calls] == [
        {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"name": "get_weather", "arguments": '{"city":"Rome"}'},
    ]
    assert calls[0]["id"] != calls[1]["id"] and all(c["message"]["content"] is None for c in done["choices"])


async def _chunks(*events: bytes) -> AsyncIterator[bytes]:
    for event in events:
        yield event


def _event(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return (
        b"data: " + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).encode()
    )


@pytest.mark.anyio
async def test_a_stream_carries_tool_call_deltas_in_openais_shape() -> None:
    named = NamedToolCall("get_weather")
    raw = b"\n\n".join(
        [
            _event({"role": "assistant", "content": ""}),
            _event({"content": '{"city":'}),
            _event({"content": '"Paris"}'}),
            _event({}, finish="stop"),
            b"data: [DONE]",
        ]
    )
    # Events split across network reads anywhere.
    out = b"".join([chunk async for chunk in named.stream(_chunks(raw[:37], raw[37:90], raw[90:] + b"\n\n"))])
    events = [e for e in out.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    deltas = [json.loads(e[6:])["choices"][0]["delta"] for e in events[:-1]]
    first = deltas[0]["tool_calls"][0]
    assert first["id"].startswith("call_") and first["function"]["name"] == "get_weather"
    arguments = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas if "tool_calls" in d)
    assert json.loads(arguments) == {"city": "Paris"}
    assert all(d.get("content") is None for d in deltas)


def test_required_among_several_tools_asks_for_a_name_and_its_arguments() -> None:
    body = _body(tool_choice="required")
    required = NamedToolCall.rewrite(body)
    assert required is not None and required.name == "" and body["tool_choice"] == "none"
    choices = body["response_format"]["json_schema"]["schema"]["anyOf"]
    assert [c["properties"]["name"]["enum"] for c in choices] == [["other"], ["get_weather"]]
    assert choices[1]["properties"]["arguments"] == PARAMETERS
    answer = {"role": "assistant", "content": '{"name":"get_weather","arguments":{"city":"Oslo"}}'}
    cut_short = {"role": "assistant", "content": '{"name":"get_wea'}
    done = required.complete(
        {"choices": [{"index": 0, "message": answer}, {"index": 1, "message": cut_short}]}
    )
    call = done["choices"][0]["message"]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
    assert done["choices"][1]["message"] == cut_short  # no call can be made of it: left as text


@pytest.mark.anyio
async def test_required_among_several_tools_streams_the_call_whole_at_the_end() -> None:
    required = NamedToolCall.rewrite(_body(tool_choice="required"))
    assert required is not None
    raw = b"\n\n".join(
        [
            _event({"role": "assistant", "content": ""}),
            _event({"content": '{"name":"other",'}),
            _event({"content": '"arguments":{}}'}),
            _event({}, finish="stop"),
            b"data: [DONE]",
        ]
    )
    out = b"".join([chunk async for chunk in required.stream(_chunks(raw + b"\n\n"))])
    deltas = [
        json.loads(e[6:])["choices"][0]["delta"] for e in out.split(b"\n\n") if e.startswith(b"data: {")
    ]
    assert all(d.get("content") is None for d in deltas)
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert len(calls) == 1 and calls[0]["function"] == {"name": "other", "arguments": "{}"}
    assert calls[0]["index"] == 0 and calls[0]["id"].startswith("call_")
