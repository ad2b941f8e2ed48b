"""A named or "required" `tool_choice` served as JSON output constrained to the functions'
parameter schemas.

vLLM 0.32 serves a named tool_choice through the model's tool-call markup (a structural tag), whose
argument grammar ignores the compact-JSON setting: a small or weak model then pads the arguments
with whitespace until max_tokens, and no tool call comes back. So the gateway asks the engine for a
`json_schema` response on the function's parameters instead (compact, like every JSON output here;
the tools stay in the prompt, with tool_choice "none"), and turns the answer's content into the
tool call, in OpenAI's shape, streamed or not. This needs no tool-call parser, so it works for any
model. OpenAI ends such a completion with finish_reason "stop", as the engine does here.

"required" among several tools: the same holds for vLLM's own "required" path (its parsers got no
call out of the tiny test model), so the schema is `{"name": one of the tools, "arguments": that
tool's parameters}` and the answer becomes a call of the tool it names. Streamed, that call is
sent whole with the choice's last chunk, once its name is known.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from service.ids import random_token


@dataclass
class NamedToolCall:
    name: str  # the tool to call; "" when the answer names it ("required" among several tools)
    _call_ids: dict[int, str] = field(default_factory=dict)  # choice index -> its tool call's id
    _buffers: dict[int, str] = field(default_factory=dict)  # choice index -> content so far ("")

    @classmethod
    def rewrite(cls, body: dict[str, Any]) -> NamedToolCall | None:
        """If `body` names a function tool to call, or requires one, turn it into a json_schema
        request (in place)."""
        choice, functions = body.get("tool_choice"), _functions(body.get("tools"))
        if choice == "required" and len(functions) > 1:
            return cls._rewrite_any(body, functions)
        if choice == "required" and len(functions) == 1:
            name = functions[0].get("name")  # "required" with a single tool: that one is named
        elif isinstance(choice, dict) and choice.get("type") == "function":
            name = (choice.get("function") or {}).get("name")
        else:
            return None
        function = next((f for f in functions if f.get("name") == name), None)
        if not isinstance(name, str) or function is None:
            return None  # no such tool: the engine's own 400 says so
        _ask_for_json(body, name, _parameters(function))
        return cls(name)

    @classmethod
    def _rewrite_any(cls, body: dict[str, Any], functions: list[dict[str, Any]]) -> NamedToolCall | None:
        names = [f.get("name") for f in functions]
        if not all(isinstance(n, str) and n for n in names):
            return None  # malformed tools: the engine's own 400 says so
        choices = [
            {
                "type": "object",
                "properties": {"name": {"type": "string", "enum": [f["name"]]}, "arguments": _parameters(f)},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
            for f in functions
        ]
        _ask_for_json(body, "tool_call", {"anyOf": choices})
        return cls("")

    def _call_id(self, index: int) -> tuple[str, bool]:
        """The choice's tool call id, and whether it is new (its first chunk)."""
        if index in self._call_ids:
            return self._call_ids[index], False
        self._call_ids[index] = f"call_{random_token(12)}"
        return self._call_ids[index], True

    def _function(self, content: str) -> dict[str, str] | None:
        """The call that `content` makes: None when it is not one (cut short by max_tokens)."""
        if self.name:
            return {"name": self.name, "arguments": content}
        try:
            answer = json.loads(content)
        except ValueError:
            return None
        if not isinstance(answer, dict) or not isinstance(answer.get("name"), str):
            return None
        return {"name": answer["name"], "arguments": json.dumps(answer.get("arguments", {}))}

    def complete(self, payload: Any) -> Any:
        """A whole completion: each choice's content becomes its tool call."""
        for choice in _choices(payload):
            message = choice.get("message")
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                function = self._function(message["content"])
                if function is None:
                    continue  # left as text: no call can be made of it
                call_id, _ = self._call_id(int(choice.get("index") or 0))
                message["tool_calls"] = [{"id": call_id, "type": "function", "function": function}]
                message["content"] = None
        return payload

    def _chunk(self, payload: Any) -> Any:
        for choice in _choices(payload):
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            if not self.name:
                self._buffer_chunk(choice, delta)
                continue
            text = delta.get("content") or ""
            call_id, first = self._call_id(int(choice.get("index") or 0))
            if first:
                call = {"index": 0, "id": call_id, "type": "function"}
                delta["tool_calls"] = [call | {"function": {"name": self.name, "arguments": text}}]
            elif text:
                delta["tool_calls"] = [{"index": 0, "function": {"arguments": text}}]
            if "content" in delta:
                delta["content"] = None
        return payload

    def _buffer_chunk(self, choice: dict[str, Any], delta: dict[str, Any]) -> None:
        """ "required" among several tools: the call is sent whole with the choice's last chunk."""
        index = int(choice.get("index") or 0)
        self._buffers[index] = self._buffers.get(index, "") + (delta.get("content") or "")
        if "content" in delta:
            delta["content"] = None
        if choice.get("finish_reason") is None:
            return
        content = self._buffers.pop(index)
        function = self._function(content)
        if function is None:
            delta["content"] = content  # no call can be made of it: the text, as it came
            return
        call_id, _ = self._call_id(index)
        delta["tool_calls"] = [{"index": 0, "id": call_id, "type": "function", "function": function}]

    async def stream(self, raw: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The engine's SSE stream with each content delta re-shaped as tool call deltas."""
        pending = b""
        async for data in raw:
            pending += data
            *events, pending = pending.split(b"\n\n")
            for event in events:
                yield self._event(event) + b"\n\n"
        if pending:
            yield pending

    def _event(self, event: bytes) -> bytes:
        if not event.startswith(b"data: {"):
            return event  # [DONE], comments
        try:
            payload = json.loads(event[6:])
        except ValueError:
            return event
        return b"data: " + json.dumps(self._chunk(payload)).encode()


def _ask_for_json(body: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    body["tool_choice"] = "none"  # the tools stay in the prompt
    body["response_format"] = {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
    body.pop("parallel_tool_calls", None)


def _parameters(function: dict[str, Any]) -> dict[str, Any]:
    parameters = function.get("parameters")
    return parameters if isinstance(parameters, dict) else {"type": "object", "properties": {}}


def _choices(payload: Any) -> list[dict[str, Any]]:
    choices = payload.get("choices") if isinstance(payload, dict) else None
    return [c for c in choices if isinstance(c, dict)] if isinstance(choices, list) else []


def _functions(tools: Any) -> list[dict[str, Any]]:
    """The `function` objects of a request's function tools."""
    if not isinstance(tools, list):
        return []
    return [t["function"] for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)]
