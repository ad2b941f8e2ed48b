"""The chat and completions surface passes through to vLLM and back in OpenAI's shape."""

from __future__ import annotations

import json
import os
from urllib.parse import urlparse

import httpx
import openai
import pytest
from openai import OpenAI

from tests.e2e.conftest import BASE_MODEL, Server
from tests.e2e.engine_key import engine_headers
from tests.e2e.processes import engine_nice_values, engine_pid

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "Classify: the order arrived late."}]


def test_sampling_parameters_pass_through(client: OpenAI) -> None:
    request = {
        "model": BASE_MODEL,
        "messages": USER,
        "n": 2,
        "temperature": 1.0,
        "top_p": 0.9,
        "seed": 11,
        "max_completion_tokens": 6,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.5,
        "logit_bias": {"5": -100},
        "user": "tester",
    }
    response = client.chat.completions.create(**request)  # type: ignore[call-overload]
    assert [c.index for c in response.choices] == [0, 1]
    assert response.usage is not None and response.usage.completion_tokens <= 12
    again = client.chat.completions.create(**request)  # type: ignore[call-overload]
    # The seed reached the engine: the same request samples the same answers.
    assert [c.message.content for c in again.choices] == [c.message.content for c in response.choices]


def test_logprobs_and_stop(client: OpenAI) -> None:
    response = client.chat.completions.create(
        model=BASE_MODEL, messages=USER, max_tokens=5, logprobs=True, top_logprobs=3, temperature=0
    )
    choice = response.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    assert all(len(t.top_logprobs) == 3 for t in choice.logprobs.content)
    text = choice.message.content or ""
    assert text, "the base model says something"
    stop = text[len(text) // 2 :][:2] or text[:1]
    stopped = client.chat.completions.create(
        model=BASE_MODEL, messages=USER, max_tokens=5, temperature=0, stop=[stop]
    )
    assert stop not in (stopped.choices[0].message.content or "")


REVIEW_SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["positive", "negative"]},
        "confident": {"type": "boolean"},
    },
    "required": ["label", "confident"],
    "additionalProperties": False,
}
PROMPTS = [
    "Great product, works as described.",
    "Broke after two days.",
    "Fine.",
    "I would buy it again!",
    "Terrible support, never again.",
    "Arrived late but works.",
    "Five stars.",
    "Not what the pictures showed.",
    "My kids love it.",
    "Meh.",
]


def test_json_schema_output_parses_with_the_default_configuration(client: OpenAI) -> None:
    # The tiny model is random: only the engine's grammar, with no free whitespace (the default
    # OPENTUNE_ENGINE_COMPACT_JSON), makes its replies complete, schema-valid JSON.
    for prompt in PROMPTS:
        response = client.chat.completions.create(
            model=BASE_MODEL,
            messages=[{"role": "user", "content": f"Classify this review: {prompt}"}],
            max_tokens=40,
            temperature=0,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "review", "schema": REVIEW_SCHEMA, "strict": True},
            },
        )
        content = response.choices[0].message.content or ""
        assert response.choices[0].finish_reason == "stop", content
        reply = json.loads(content)
        assert reply["label"] in ("positive", "negative") and isinstance(reply["confident"], bool)
    response = client.chat.completions.create(
        model=BASE_MODEL, messages=USER, max_tokens=60, temperature=0, response_format={"type": "json_object"}
    )
    assert response.choices[0].finish_reason in ("stop", "length")


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "enum": ["Paris", "Berlin", "Tokyo"]},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}
NAMED = {"type": "function", "function": {"name": "get_weather"}}


def test_a_named_tool_choice_returns_a_tool_call_with_the_default_configuration(client: OpenAI) -> None:
    # No tool-call parser configured by the test: the engine's is picked from the chat template.
    response = client.chat.completions.create(
        model=BASE_MODEL,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice=NAMED,  # type: ignore[arg-type]
        parallel_tool_calls=False,
        max_tokens=40,
        temperature=0,
    )
    calls = response.choices[0].message.tool_calls or []
    assert len(calls) == 1 and calls[0].function.name == "get_weather" and calls[0].id
    assert set(json.loads(calls[0].function.arguments)) == {"city", "unit"}
    auto = client.chat.completions.create(
        model=BASE_MODEL, messages=USER, tools=[WEATHER_TOOL], tool_choice="auto", max_tokens=8, temperature=0
    )
    assert auto.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_a_required_choice_of_one_tool_returns_its_call_with_the_default_configuration(
    client: OpenAI,
) -> None:
    response = client.chat.completions.create(
        model=BASE_MODEL,
        messages=[{"role": "user", "content": "Weather in Berlin?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="required",
        max_tokens=60,
        temperature=0,
    )
    calls = response.choices[0].message.tool_calls or []
    assert calls and all(c.function.name == "get_weather" for c in calls)
    assert all(set(json.loads(c.function.arguments)) == {"city", "unit"} for c in calls)


TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Local time of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Paris", "Berlin", "Tokyo"]}},
            "required": ["city"],
        },
    },
}


def test_a_required_choice_among_several_tools_returns_calls_that_parse(client: OpenAI) -> None:
    # vLLM serves "required" as JSON output constrained to a list of {name, parameters} over the
    # tools: with compact JSON (the default) a small model cannot pad it with whitespace.
    for stream in (False, True):
        request = {
            "model": BASE_MODEL,
            "messages": [{"role": "user", "content": "Weather or time in Tokyo?"}],
            "tools": [WEATHER_TOOL, TIME_TOOL],
            "tool_choice": "required",
            "max_tokens": 120,
            "temperature": 0,
        }
        if stream:
            arguments: dict[int, str] = {}
            names: dict[int, str] = {}
            for chunk in client.chat.completions.create(**request, stream=True):  # type: ignore[call-overload]
                for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                    names[call.index] = names.get(call.index, "") + (call.function.name or "")
                    arguments[call.index] = arguments.get(call.index, "") + (call.function.arguments or "")
            calls = [(names[i], arguments[i]) for i in sorted(names)]
        else:
            response = client.chat.completions.create(**request)  # type: ignore[call-overload]
            message_calls = response.choices[0].message.tool_calls or []
            calls = [(c.function.name, c.function.arguments) for c in message_calls]
        assert calls, f"no tool call (stream={stream})"
        for name, raw in calls:
            assert name in ("get_weather", "get_time")
            expected = {"city", "unit"} if name == "get_weather" else {"city"}
            assert set(json.loads(raw)) == expected


def test_a_named_tool_choice_streams_in_openais_delta_shape(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model=BASE_MODEL,
        messages=[{"role": "user", "content": "Weather in Tokyo?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice=NAMED,  # type: ignore[arg-type]
        max_tokens=40,
        temperature=0,
        stream=True,
    )
    name, arguments, call_ids = "", "", set()
    for chunk in stream:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            assert call.index == 0
            if call.id:
                call_ids.add(call.id)
            if call.function and call.function.name:
                name += call.function.name
            if call.function and call.function.arguments:
                arguments += call.function.arguments
    assert name == "get_weather" and len(call_ids) == 1
    assert set(json.loads(arguments)) == {"city", "unit"}


def _engine_completion(server: Server, body: dict[str, object]) -> str:
    """The engine's own text for a completions request, streamed or not, called directly."""
    url, headers = f"{server.engine_url}/v1/completions", engine_headers(server.engine_url)
    if not body.get("stream"):
        return str(httpx.post(url, json=body, headers=headers, timeout=60).json()["choices"][0]["text"])
    text = ""
    with httpx.stream("POST", url, json=body, headers=headers, timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                text += "".join(c["text"] for c in json.loads(line[6:])["choices"])
    return text


def test_stream_with_usage_and_completions_endpoint(client: OpenAI, server: Server) -> None:
    chunks = list(
        client.chat.completions.create(
            model=BASE_MODEL, messages=USER, max_tokens=6, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert all(c.id == chunks[0].id for c in chunks)
    request = {"model": BASE_MODEL, "prompt": "The order", "max_tokens": 5, "temperature": 0, "seed": 3}
    text = client.completions.create(**request)  # type: ignore[call-overload]
    assert text.object == "text_completion" and text.model == BASE_MODEL
    assert text.choices[0].text == _engine_completion(server, request)
    streamed = list(client.completions.create(stream=True, **request))  # type: ignore[call-overload]
    joined = "".join(c.choices[0].text for c in streamed if c.choices)
    assert joined == _engine_completion(server, {**request, "stream": True})


def test_engine_errors_keep_openai_shape(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=BASE_MODEL, messages=USER, max_tokens=5, n=2, logprobs=True, top_logprobs=99
        )
    assert isinstance(err.value.body, dict) and err.value.body.get("message")
    assert err.value.code is None or isinstance(err.value.code, str)


def test_the_cpu_engine_core_gives_way_to_the_gateway_and_the_model(server: Server) -> None:
    """vLLM's engine core spins while it waits for its worker (service/engine/cpu_priority.py):
    lowered to nice 10, every one of its threads; the worker (the model) and the HTTP server not."""
    port = urlparse(server.engine_url).port or 0
    values = engine_nice_values(port)
    assert values["VLLM::EngineCore"] == {10}, values
    assert values["VLLM::Worker"] == {0} and values["server"] == {0}, values
    # Its own process group, in the gateway's session (service/processes.py: why).
    engine = engine_pid(port)
    assert os.getpgid(engine) == engine and os.getsid(engine) == os.getsid(server.process.pid)
