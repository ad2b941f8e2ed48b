"""The access middlewares, called as ASGI apps: keys are checked before a body byte is read, and
bodies are cut off while they stream in once they pass the cap."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import FastAPI, File, UploadFile
from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.access import PRINCIPAL, AuthenticationMiddleware, BodySizeLimitMiddleware
from service.auth import KeyRing, Principal
from service.config import Settings
from service.errors import install_error_handlers
from service.store.database import open_database

KEY = "sk-unit-test-key"

pytestmark = pytest.mark.anyio


class Body:
    """An ASGI `receive` that yields a body in chunks and counts how many it handed out."""

    def __init__(self, chunk: bytes, chunks: int) -> None:
        self.chunk, self.chunks, self.handed_out = chunk, chunks, 0

    async def __call__(self) -> Message:
        if self.handed_out >= self.chunks:
            return {"type": "http.disconnect"}
        self.handed_out += 1
        return {"type": "http.request", "body": self.chunk, "more_body": self.handed_out < self.chunks}

    @property
    def bytes_read(self) -> int:
        return self.handed_out * len(self.chunk)


class Reply:
    """An ASGI `send` that keeps what the app answered."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        starts = [m for m in self.messages if m["type"] == "http.response.start"]
        assert len(starts) == 1, self.messages
        return int(starts[0]["status"])

    @property
    def headers(self) -> dict[str, str]:
        start = next(m for m in self.messages if m["type"] == "http.response.start")
        return {k.decode(): v.decode() for k, v in start["headers"]}

    @property
    def error(self) -> dict[str, Any]:
        body = b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")
        error: dict[str, Any] = json.loads(body)["error"]
        assert set(error) == {"message", "type", "param", "code"}
        return error


class ReadsWholeBody:
    """A route stand-in: reads the body to its end, then answers 200 with what it saw."""

    def __init__(self) -> None:
        self.received = b""
        self.principal: Principal | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.principal = scope.get("state", {}).get(PRINCIPAL)
        while True:
            message = await receive()
            self.received += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def http_scope(path: str, headers: dict[str, str] | None = None, method: str = "POST") -> Scope:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return {"type": "http", "method": method, "path": path, "headers": raw, "query_string": b""}


@pytest.fixture
def key_ring(tmp_path: Path) -> KeyRing:
    settings = Settings(data_dir=tmp_path, api_key=SecretStr(KEY))
    return KeyRing(settings, open_database(settings))


def authenticating(app: ASGIApp, key_ring: KeyRing) -> AuthenticationMiddleware:
    return AuthenticationMiddleware(app, key_ring=lambda: key_ring)


async def test_no_key_is_401_before_any_body_byte_is_read(key_ring: KeyRing) -> None:
    route, body, reply = ReadsWholeBody(), Body(b"x" * 65536, 16384), Reply()  # 1 GiB on offer
    await authenticating(route, key_ring)(http_scope("/v1/files"), body, reply)
    assert reply.status == 401 and reply.error["code"] == "missing_api_key"
    assert body.handed_out == 0 and route.received == b""
    assert reply.headers["connection"] == "close"


async def test_wrong_key_is_401_before_any_body_byte_is_read(key_ring: KeyRing) -> None:
    route, body, reply = ReadsWholeBody(), Body(b"{}", 1), Reply()
    scope = http_scope("/v1/fine_tuning/jobs", {"Authorization": "Bearer sk-wrong"})
    await authenticating(route, key_ring)(scope, body, reply)
    assert reply.status == 401 and reply.error["code"] == "invalid_api_key"
    assert body.handed_out == 0


async def test_valid_key_reaches_the_route_with_its_principal(key_ring: KeyRing) -> None:
    route, body, reply = ReadsWholeBody(), Body(b"abc", 3), Reply()
    scope = http_scope("/v1/files", {"Authorization": f"Bearer {KEY}"})
    await authenticating(route, key_ring)(scope, body, reply)
    assert reply.status == 200 and route.received == b"abcabcabc"
    assert route.principal == Principal("org-default")


async def test_paths_outside_v1_need_no_key(key_ring: KeyRing) -> None:
    route, reply = ReadsWholeBody(), Reply()
    await authenticating(route, key_ring)(http_scope("/healthz", method="GET"), Body(b"", 1), reply)
    assert reply.status == 200 and route.principal is None
    reply = Reply()
    await authenticating(route, key_ring)(http_scope("/v1x", method="GET"), Body(b"", 1), reply)
    assert reply.status == 200


def capped(app: ASGIApp, upload: int = 10_000, other: int = 2_500) -> BodySizeLimitMiddleware:
    return BodySizeLimitMiddleware(app, upload_max_bytes=upload, max_bytes=other)


async def test_declared_length_over_the_cap_is_413_at_once() -> None:
    route, body, reply = ReadsWholeBody(), Body(b"x" * 1000, 3), Reply()
    scope = http_scope("/v1/chat/completions", {"Content-Length": "2501"})
    await capped(route)(scope, body, reply)
    assert reply.status == 413 and reply.error["code"] == "request_too_large"
    assert body.handed_out == 0 and reply.headers["connection"] == "close"


async def test_chunked_body_is_cut_off_once_it_passes_the_cap() -> None:
    route, body, reply = ReadsWholeBody(), Body(b"x" * 1000, 1000), Reply()
    await capped(route)(http_scope("/v1/chat/completions"), body, reply)
    assert reply.status == 413 and reply.error["code"] == "request_too_large"
    assert body.handed_out == 3  # 3000 bytes: the first chunk past 2500, and not one more


async def test_body_within_the_cap_passes_intact() -> None:
    route, body, reply = ReadsWholeBody(), Body(b"y" * 500, 5), Reply()
    await capped(route)(http_scope("/v1/chat/completions", {"Content-Length": "2500"}), body, reply)
    assert reply.status == 200 and route.received == b"y" * 2500


async def test_file_uploads_have_their_own_cap() -> None:
    route, reply = ReadsWholeBody(), Reply()
    await capped(route)(http_scope("/v1/files"), Body(b"z" * 1000, 9), reply)
    assert reply.status == 200 and len(route.received) == 9000
    reply = Reply()
    await capped(route)(http_scope("/v1/files"), Body(b"z" * 1000, 11), reply)
    assert reply.status == 413


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/v1/uploads/upload_abc/parts", 6000),  # a part of an upload: the part cap
        ("/v1/uploads/upload_abc/parts/x", 2500),  # anything else: the general cap
        ("/v1/uploads", 2500),
        ("/v1/uploads/upload_abc/complete", 2500),
    ],
)
async def test_parts_of_an_upload_have_their_own_cap(path: str, allowed: int) -> None:
    route = ReadsWholeBody()
    capped_parts = BodySizeLimitMiddleware(
        route, upload_max_bytes=10_000, max_bytes=2500, part_max_bytes=6000
    )
    for size, status in [(allowed, 200), (allowed + 1, 413)]:
        reply = Reply()
        await capped_parts(http_scope(path), Body(b"p" * size, 1), reply)
        assert reply.status == status


def upload_app() -> FastAPI:
    """A FastAPI multipart route: FastAPI turns errors while parsing a form into 400s of its own."""
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/v1/files")
    def upload(file: Annotated[UploadFile, File()]) -> dict[str, int]:
        return {"bytes": len(file.file.read())}

    return app


def multipart(size: int) -> tuple[dict[str, str], Callable[[], Body]]:
    head = b'--B\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
    payload = head + b"q" * size + b"\r\n--B--\r\n"
    return {"Content-Type": "multipart/form-data; boundary=B"}, lambda: Body(payload, 1)


async def test_a_multipart_route_answers_413_not_its_parse_error() -> None:
    headers, body = multipart(20_000)
    reply = Reply()
    await capped(upload_app())(http_scope("/v1/files", headers), body(), reply)
    assert reply.status == 413 and reply.error["code"] == "request_too_large"
    headers, body = multipart(5_000)
    reply = Reply()
    await capped(upload_app())(http_scope("/v1/files", headers), body(), reply)
    assert reply.status == 200
