"""A named `tool_choice` (or "required" with a single tool) served as JSON output constrained to
the function's parameter schema.

vLLM 0.32 serves a named tool_choice through the model's tool-call markup (a structural tag), whose
argument grammar ignores the compact-JSON setting: a small or weak model then pads the arguments
with whitespace until max_tokens, and no tool call comes back. So the gateway asks the engine for a
`json_schema` response on the function's parameters instead (compact, like every JSON output here;
the tools stay in the prompt, with tool_choice "none"), and turns the answer's content into the
tool call, in OpenAI's shape, streamed or not. This needs no tool-call parser, so it works for any
model. OpenAI ends such a completion with finish_reason "stop", as the engine does here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from service.ids import random_token


@dataclass
class NamedToolCall:
    name: str
    _call_ids: dict[int, str] = field(default_factory=dict)  # choice index -> its tool call's id

    @classmethod
    def rewrite(cls, body: dict[str, Any]) -> NamedToolCall | None:
        """If `body` names a function tool to call, turn it into a json_schema request (in place)."""
        choice, functions = body.get("tool_choice"), _functions(body.get("tools"))
        if choice == "required" and len(functions) == 1:
            name = functions[0].get("name")  # "required" with a single tool: that one is named
        elif isinstance(choice, dict) and choice.get("type") == "function":
            name = (choice.get("function") or {}).get("name")
        else:
            return None
        function = next((f for f in functions if f.get("name") == name), None)
        if not isinstance(name, str) or function is None:
            return None  # no such tool: the engine's own 400 says so
        schema = function.get("parameters") or {"type": "object", "properties": {}}
        body["tool_choice"] = "none"
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
        body.pop("parallel_tool_calls", None)
        return cls(name)

    def _call_id(self, index: int) -> tuple[str, bool]:
        """The choice's tool call id, and whether it is new (its first chunk)."""
        if index in self._call_ids:
            return self._call_ids[index], False
        self._call_ids[index] = f"call_{random_token(12)}"
        return self._call_ids[index], True

    def complete(self, payload: Any) -> Any:
        """A whole completion: each choice's content becomes its tool call."""
        for choice in _choices(payload):
            message = choice.get("message")
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                call_id, _ = self._call_id(int(choice.get("index") or 0))
                function = {"name": self.name, "arguments": message["content"]}
                message["tool_calls"] = [{"id": call_id, "type": "function", "function": function}]
                message["content"] = None
        return payload

    def _chunk(self, payload: Any) -> Any:
        for choice in _choices(payload):
            delta = choice.get("delta")
            if not isinstance(delta, dict):
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


def _choices(payload: Any) -> list[dict[str, Any]]:
    choices = payload.get("choices") if isinstance(payload, dict) else None
    return [c for c in choices if isinstance(c, dict)] if isinstance(choices, list) else []


def _functions(tools: Any) -> list[dict[str, Any]]:
    """The `function` objects of a request's function tools."""
    if not isinstance(tools, list):
        return []
    return [t["function"] for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)]
