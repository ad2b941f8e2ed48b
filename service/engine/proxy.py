"""Forwarding OpenAI requests to the engine and its answers back, streamed or not.

Engine errors are re-shaped into OpenAI's envelope (vLLM's `code` is the HTTP status as an int;
OpenAI's is a string or null).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from service.engine.client import EngineClient
from service.errors import error_response

# vLLM sends null for optional fields that OpenAI either omits or types as objects or arrays.
_NULL_MESSAGE_KEYS = ("annotations", "function_call", "audio")
_NULL_USAGE_KEYS = ("prompt_tokens_details", "completion_tokens_details")


def openai_body(body: Any) -> Any:
    """A non-streamed completion in OpenAI's shape: unset optional fields left out, not null."""
    if not isinstance(body, dict):
        return body
    for choice in body.get("choices") or []:
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict):
            for key in _NULL_MESSAGE_KEYS:
                if key in message and message[key] is None:
                    del message[key]
    usage = body.get("usage")
    if isinstance(usage, dict):
        for key in _NULL_USAGE_KEYS:
            if key in usage and usage[key] is None:
                del usage[key]
    return body


def openai_error_from_engine(status_code: int, body: dict[str, Any]) -> JSONResponse:
    inner = body.get("error") if isinstance(body.get("error"), dict) else body
    assert isinstance(inner, dict)
    code = inner.get("code")
    return error_response(
        status_code,
        str(inner.get("message") or "The model engine returned an error."),
        str(inner.get("type") or ("invalid_request_error" if status_code < 500 else "server_error")),
        inner.get("param") if isinstance(inner.get("param"), str) else None,
        code if isinstance(code, str) else None,
    )


async def forward(engine: EngineClient, path: str, body: dict[str, Any]) -> Response:
    stream = bool(body.get("stream"))
    upstream = await engine.send(path, body, stream=stream)
    if upstream.status_code >= 400:
        if stream:
            await upstream.aread()
            await upstream.aclose()
        try:
            payload = upstream.json()
        except ValueError:
            payload = {"message": upstream.text}
        return openai_error_from_engine(upstream.status_code, payload if isinstance(payload, dict) else {})
    if not stream:
        try:
            content = json.dumps(openai_body(upstream.json())).encode()
        except ValueError:
            content = upstream.content
        return Response(content=content, status_code=upstream.status_code, media_type="application/json")
    # Closing the upstream response when the client goes away cancels the engine's request.
    return StreamingResponse(
        upstream.aiter_raw(),
        status_code=upstream.status_code,
        media_type="text/event-stream",
        background=BackgroundTask(upstream.aclose),
    )
