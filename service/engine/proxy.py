"""Forwarding OpenAI requests to the engine and its answers back, streamed or not.

Engine errors are re-shaped into OpenAI's envelope (vLLM's `code` is the HTTP status as an int;
OpenAI's is a string or null).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from service.engine.client import EngineClient, EngineResponse, EngineStreamBroken
from service.engine.named_tool import NamedToolCall
from service.errors import error_response

logger = logging.getLogger(__name__)

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


def sse_error(message: str, type_: str = "server_error", code: str | None = None) -> bytes:
    """An error inside a started stream: the SDK raises APIError on a data object with `error`."""
    payload = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return f"data: {json.dumps(payload)}\n\n".encode()


class Lease(Protocol):
    """What a request holds while the engine works on it (service/engine/serving.py)."""

    def release(self) -> None: ...


async def forward(
    engine: EngineClient, path: str, body: dict[str, Any], lease: Lease, named: NamedToolCall | None = None
) -> Response:
    """Send an OpenAI request to the engine and its answer back. `lease` is released exactly once,
    when the engine is done with the request: at once for a complete answer or an error, after the
    last byte for a stream (or when the stream ends otherwise). `named`: the request was a named
    tool_choice served as JSON output (named_tool.py), whose answer becomes the tool call."""
    try:
        upstream = await engine.send(path, body)
    except BaseException:
        lease.release()
        raise
    if upstream.status_code >= 400 or not body.get("stream"):
        try:
            return _complete_response(upstream.status_code, await upstream.read(), named)
        except EngineStreamBroken as exc:
            logger.warning("Engine answer broke: %s", exc)
            return error_response(502, "The model engine failed while answering.", "server_error")
        finally:
            upstream.close()
            lease.release()
    return _EngineStream(upstream, lease, named)


class _EngineStream(StreamingResponse):
    """The engine's SSE bytes as they come. However the stream ends (finished, the client went
    away, the engine failed, or the response was never sent), the engine connection is closed,
    which cancels the engine's request, and the lease released, once."""

    def __init__(self, upstream: EngineResponse, lease: Lease, named: NamedToolCall | None) -> None:
        self._upstream = upstream
        self._lease: Lease | None = lease
        body = self._relay() if named is None else named.stream(self._relay())
        super().__init__(body, status_code=upstream.status_code, media_type="text/event-stream")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Starlette may stop iterating `_relay` without closing it (a client that went away), so
        # the end of the response is where the stream is surely over.
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._finish()

    async def _relay(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._upstream.chunks():
                yield chunk
        except EngineStreamBroken as exc:
            logger.warning("Engine stream broke: %s", exc)
            yield sse_error(
                "The model engine failed while streaming the response.", code="engine_unavailable"
            )
        finally:
            await self._finish()  # as soon as the engine is done, not when the client has it all

    async def _finish(self) -> None:
        lease, self._lease = self._lease, None
        if lease is None:
            return
        try:
            self._upstream.close()
        finally:
            lease.release()


def _complete_response(status_code: int, content: bytes, named: NamedToolCall | None) -> Response:
    try:
        payload = json.loads(content)
    except ValueError:
        payload = None
    if status_code >= 400:
        return openai_error_from_engine(status_code, payload if isinstance(payload, dict) else {})
    if named is not None:
        payload = named.complete(payload)
    if payload is not None:
        content = json.dumps(openai_body(payload)).encode()
    return Response(content=content, status_code=status_code, media_type="application/json")
