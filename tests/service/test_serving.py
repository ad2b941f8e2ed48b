"""Serving a completion (service/engine/serving.py and proxy.forward) against an engine stand-in, a
real HTTP server (aiohttp's) in the test's event loop: the lease is released exactly once and the
engine's connection closed however a request ends, and a refused adapter gives back the
organization's slot."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from fastapi.responses import Response
from starlette.types import Message

from service.engine.client import EngineClient
from service.engine.fleet import EngineFleet, ServedBase
from service.engine.limits import ChatCaps, ChatLimits
from service.engine.proxy import forward
from service.engine.replica import Replica
from service.engine.serving import complete
from service.errors import AdapterLoadError, EngineRejected, EngineUnreachable, RateLimited
from tests.service.fake_engine import one_replica
from tests.service.test_adapter_registry import FakeEngine, registry_on

pytestmark = pytest.mark.anyio

CHAT = "/v1/chat/completions"


@dataclass
class EngineStream:
    """An SSE body: `chunks` 10 ms apart, then a broken connection if `breaks`, or an engine that
    keeps generating if `endless`. Records how it ended: "done", "broke" or "hung up" (by the
    gateway, which is how the engine learns to abort the request)."""

    chunks: int
    breaks: bool = False
    endless: bool = False
    ended: str = ""

    async def play(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        try:
            for index in range(self.chunks):
                await asyncio.sleep(0.01)
                await response.write(f"data: {json.dumps({'index': index})}\n\n".encode())
            if self.breaks:
                assert request.transport is not None
                request.transport.abort()  # connection reset mid-stream
                self.ended = "broke"
                return response
            while self.endless:
                await asyncio.sleep(0.01)
                await response.write(b"data: {}\n\n")
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            self.ended = "hung up"
            raise
        self.ended = "done"
        return response

    async def end(self) -> str:
        """How it ended, once it has (the engine sees a hang-up at its next write)."""
        for _ in range(500):
            if self.ended:
                return self.ended
            await asyncio.sleep(0.01)
        return "still streaming"


@dataclass
class Engine:
    """A real HTTP server answering as vLLM does: `streams` are the streams it handed out, `bodies`
    the requests it got. `unreachable` makes it refuse connections (it stops listening)."""

    status: int = 200
    stream: dict[str, Any] = field(default_factory=dict)
    streams: list[EngineStream] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None
    _clients: list[EngineClient] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET":  # /health
            return web.Response()
        body = await request.json()
        self.bodies.append(body)
        if self.status >= 400:
            return web.json_response({"error": {"message": "boom", "code": self.status}}, status=self.status)
        if body.get("stream"):
            self.streams.append(EngineStream(**(self.stream or {"chunks": 3})))
            return await self.streams[-1].play(request)
        return web.json_response({"id": "c", "object": "chat.completion", "choices": []})

    async def start(self, port: int = 0) -> Engine:
        """Listen on `port` (any free one by default; the same one again to come back)."""
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self.handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, reuse_address=True)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        """Stop listening: connections to it are refused from now on."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def restart(self) -> None:
        await self.start(int(self.url.rsplit(":", 1)[1]))

    def client(self) -> EngineClient:
        self._clients.append(EngineClient(self.url))
        return self._clients[-1]

    async def shutdown(self) -> None:
        """Stop it and close the clients made of it."""
        await self.stop()
        for client in self._clients:
            await client.close()


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    served = await Engine().start()
    yield served
    await served.shutdown()


async def unreachable_engine() -> EngineClient:
    """A client of an engine that is gone: a port nothing listens on."""
    gone = await Engine().start()
    await gone.stop()
    return EngineClient(gone.url)


class CountingLease:
    def __init__(self) -> None:
        self.releases = 0

    def release(self) -> None:
        self.releases += 1


async def _send_response(
    response: Response, fail_send_at: int | None = None, disconnect_after: int | None = None
) -> list[bytes]:
    """Play `response` to a client as an ASGI server would; the client may go away at the
    `fail_send_at`-th message (sending raises, ASGI 2.4) or after `disconnect_after` body messages
    (an http.disconnect message, ASGI 2.0)."""
    received: list[bytes] = []
    bodies = asyncio.Event()

    async def send(message: Message) -> None:
        if fail_send_at is not None and len(received) + 1 >= fail_send_at:
            raise OSError("client went away")
        received.append(message.get("body", b""))
        if disconnect_after is not None and len(received) > disconnect_after:
            bodies.set()

    async def receive() -> Message:
        if disconnect_after is None:
            await asyncio.Event().wait()
        await bodies.wait()
        return {"type": "http.disconnect"}

    spec = "2.0" if disconnect_after is not None else "2.4"
    scope = {"type": "http", "asgi": {"spec_version": spec}}
    try:
        await response(scope, receive, send)
    except Exception as exc:  # a client that went away, as Starlette reports it
        assert fail_send_at is not None, exc
    return received


async def test_complete_answer_releases_the_lease_once(engine: Engine) -> None:
    lease = CountingLease()
    response = await forward(engine.client(), CHAT, {"model": "m"}, lease)
    assert response.status_code == 200
    assert lease.releases == 1


async def test_engine_error_answer_releases_the_lease_once(engine: Engine) -> None:
    engine.status = 500
    for stream in (False, True):
        lease = CountingLease()
        response = await forward(engine.client(), CHAT, {"model": "m", "stream": stream}, lease)
        assert response.status_code == 500
        assert json.loads(bytes(response.body))["error"]["message"] == "boom"
        assert lease.releases == 1


async def test_unreachable_engine_releases_the_lease_once() -> None:
    lease = CountingLease()
    client = await unreachable_engine()
    with pytest.raises(EngineUnreachable):
        await forward(client, CHAT, {"model": "m"}, lease)
    await client.close()
    assert lease.releases == 1


@pytest.mark.parametrize(
    ("stream", "client"),
    [
        pytest.param({"chunks": 3}, {}, id="read to the end"),
        pytest.param({"chunks": 2, "breaks": True}, {}, id="engine breaks mid-stream"),
        pytest.param({"chunks": 1, "endless": True}, {"fail_send_at": 3}, id="client gone (ASGI 2.4)"),
        pytest.param({"chunks": 1, "endless": True}, {"disconnect_after": 2}, id="client gone (ASGI 2.0)"),
        pytest.param({"chunks": 1, "endless": True}, {"fail_send_at": 1}, id="response never started"),
    ],
)
async def test_stream_releases_the_lease_once_and_closes_the_engine_stream(
    engine: Engine, stream: dict[str, Any], client: dict[str, int]
) -> None:
    engine.stream, lease = stream, CountingLease()
    response = await forward(engine.client(), CHAT, {"model": "m", "stream": True}, lease)
    assert lease.releases == 0  # held while the engine streams
    received = await _send_response(response, **client)
    assert lease.releases == 1
    expected = "broke" if stream.get("breaks") else "hung up" if stream.get("endless") else "done"
    assert await engine.streams[0].end() == expected
    if stream.get("breaks"):
        assert b"engine_unavailable" in b"".join(received)


@dataclass(frozen=True)
class Model:
    name: str
    base: str = "base"
    adapter_path: str | None = None


class Catalog:
    def resolve(self, org_id: str, name: str) -> Model:
        return Model(name) if name == "base" else Model(name, adapter_path=f"/adapters/{name}")

    def served_base(self, name: str) -> Model | None:
        return Model(name) if name == "base" else None


@dataclass
class Gateway:
    engine: Engine
    admin: FakeEngine  # what the adapter registry asks the engine
    base: ServedBase
    limits: ChatLimits = field(default_factory=lambda: ChatLimits(ChatCaps(1, 4, 100)))

    async def complete(self, model: str, **body: Any) -> Response:
        fleet = EngineFleet([self.base])
        return await complete(Catalog(), fleet, self.limits, "org", CHAT, {"model": model, **body})

    @property
    def replica(self) -> Replica:
        return self.base.replicas[0]

    def holds_nothing(self) -> bool:
        return (
            self.limits.in_flight("org") == 0
            and not self.replica.adapters._in_use
            and not self.replica.in_flight
        )


@pytest.fixture
def gateway(tmp_path: Path, engine: Engine) -> Gateway:
    admin = FakeEngine()
    return Gateway(engine, admin, one_replica("base", tmp_path, engine.client(), registry_on(admin)))


async def test_adapter_and_slot_are_held_while_streaming_and_released_at_the_end(gateway: Gateway) -> None:
    response = await gateway.complete("ft:a", stream=True)
    assert gateway.limits.in_flight("org") == 1 and gateway.replica.adapters._in_use["ft:a"] == 1
    with pytest.raises(RateLimited):  # the organization's one slot is taken
        await gateway.complete("base")
    await _send_response(response)
    assert gateway.holds_nothing()
    assert await gateway.engine.streams[0].end() == "done"
    assert json.loads(bytes((await gateway.complete("base")).body))["object"] == "chat.completion"
    assert gateway.holds_nothing()


async def test_cache_salt_replaces_the_callers(gateway: Gateway) -> None:
    await gateway.complete("base", cache_salt="mine")
    assert gateway.engine.bodies[0]["cache_salt"] == gateway.limits.cache_salt("org") != "mine"


async def test_adapter_load_failure_releases_the_slot(gateway: Gateway) -> None:
    gateway.admin.refuse_load["ft:a"] = EngineRejected(400, {"message": "bad adapter at /srv/x"})
    with pytest.raises(AdapterLoadError):
        await gateway.complete("ft:a")
    assert gateway.holds_nothing()
    assert gateway.replica.adapters.resident == []


async def test_failing_engine_releases_slot_and_adapter(gateway: Gateway) -> None:
    gateway.engine.status = 500
    assert (await gateway.complete("ft:a")).status_code == 500
    assert gateway.holds_nothing()
    await gateway.engine.stop()
    with pytest.raises(EngineUnreachable):
        await gateway.complete("ft:a")
    assert gateway.holds_nothing()


async def test_restarting_engine_is_refused_before_taking_anything(gateway: Gateway) -> None:
    gateway.replica.client.available = False
    with pytest.raises(EngineUnreachable):
        await gateway.complete("ft:a")
    assert gateway.holds_nothing()
    assert gateway.admin.calls == []
