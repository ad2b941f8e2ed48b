"""Serving a completion (service/engine/serving.py and proxy.forward) against an engine stand-in on
httpx's MockTransport, no processes: the lease is released exactly once and the engine's connection
closed however a request ends, and a refused adapter gives back the organization's slot."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
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


class EngineStream(httpx.AsyncByteStream):
    """An SSE body: `chunks` 10 ms apart, then a broken connection if `breaks`, or an engine that
    keeps generating if `endless`. Records whether the gateway closed it."""

    def __init__(self, chunks: int, breaks: bool = False, endless: bool = False) -> None:
        self.chunks, self.breaks, self.endless = chunks, breaks, endless
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for index in range(self.chunks):
            await asyncio.sleep(0.01)
            yield f"data: {json.dumps({'index': index})}\n\n".encode()
        if self.breaks:
            raise httpx.ReadError("connection reset by peer")
        while self.endless:
            await asyncio.sleep(0.01)
            yield b"data: {}\n\n"
        yield b"data: [DONE]\n\n"

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class Engine:
    """The engine's answers: `reply` builds one per request; `streams` are those it handed out."""

    status: int = 200
    stream: dict[str, Any] = field(default_factory=dict)
    unreachable: bool = False
    streams: list[EngineStream] = field(default_factory=list)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if self.unreachable:
            raise httpx.ConnectError("connection refused")
        if request.method == "GET":  # /health
            return httpx.Response(200)
        if self.status >= 400:
            return httpx.Response(self.status, json={"error": {"message": "boom", "code": self.status}})
        if json.loads(request.content).get("stream"):
            self.streams.append(EngineStream(**(self.stream or {"chunks": 3})))
            return httpx.Response(200, stream=self.streams[-1])
        return httpx.Response(200, json={"id": "c", "object": "chat.completion", "choices": []})

    def client(self) -> EngineClient:
        client = EngineClient("http://engine")
        client.http = httpx.AsyncClient(base_url="http://engine", transport=httpx.MockTransport(self.handle))
        return client


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


async def test_complete_answer_releases_the_lease_once() -> None:
    lease = CountingLease()
    response = await forward(Engine().client(), CHAT, {"model": "m"}, lease)
    assert response.status_code == 200
    assert lease.releases == 1


async def test_engine_error_answer_releases_the_lease_once() -> None:
    for stream in (False, True):
        lease = CountingLease()
        response = await forward(Engine(status=500).client(), CHAT, {"model": "m", "stream": stream}, lease)
        assert response.status_code == 500
        assert json.loads(bytes(response.body))["error"]["message"] == "boom"
        assert lease.releases == 1


async def test_unreachable_engine_releases_the_lease_once() -> None:
    lease = CountingLease()
    with pytest.raises(EngineUnreachable):
        await forward(Engine(unreachable=True).client(), CHAT, {"model": "m"}, lease)
    assert lease.releases == 1


@pytest.mark.parametrize(
    ("stream", "client"),
    [
        pytest.param({"chunks": 3}, {}, id="read to the end"),
        pytest.param({"chunks": 2, "breaks": True}, {}, id="engine breaks mid-stream"),
        pytest.param({"chunks": 1, "endless": True}, {"fail_send_at": 3}, id="client gone (ASGI 2.4)"),
        pytest.param({"chunks": 1, "endless": True}, {"disconnect_after": 2}, id="client gone (ASGI 2.0)"),
        pytest.param({"chunks": 3}, {"fail_send_at": 1}, id="response never started"),
    ],
)
async def test_stream_releases_the_lease_once_and_closes_the_engine_stream(
    stream: dict[str, Any], client: dict[str, int]
) -> None:
    engine, lease = Engine(stream=stream), CountingLease()
    response = await forward(engine.client(), CHAT, {"model": "m", "stream": True}, lease)
    assert lease.releases == 0  # held while the engine streams
    received = await _send_response(response, **client)
    assert lease.releases == 1
    assert engine.streams[0].closed
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
def gateway(tmp_path: Path) -> Gateway:
    engine, admin = Engine(), FakeEngine()
    return Gateway(engine, admin, one_replica("base", tmp_path, engine.client(), registry_on(admin)))


async def test_adapter_and_slot_are_held_while_streaming_and_released_at_the_end(gateway: Gateway) -> None:
    response = await gateway.complete("ft:a", stream=True)
    assert gateway.limits.in_flight("org") == 1 and gateway.replica.adapters._in_use["ft:a"] == 1
    with pytest.raises(RateLimited):  # the organization's one slot is taken
        await gateway.complete("base")
    await _send_response(response)
    assert gateway.holds_nothing()
    assert gateway.engine.streams[0].closed
    assert json.loads(bytes((await gateway.complete("base")).body))["object"] == "chat.completion"
    assert gateway.holds_nothing()


async def test_cache_salt_replaces_the_callers(gateway: Gateway) -> None:
    bodies: list[dict[str, Any]] = []
    answer = gateway.engine.handle

    async def record(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return await answer(request)

    gateway.replica.client.http = httpx.AsyncClient(
        base_url="http://e", transport=httpx.MockTransport(record)
    )
    await gateway.complete("base", cache_salt="mine")
    assert bodies[0]["cache_salt"] == gateway.limits.cache_salt("org") != "mine"


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
    gateway.engine.unreachable = True
    with pytest.raises(EngineUnreachable):
        await gateway.complete("ft:a")
    assert gateway.holds_nothing()


async def test_restarting_engine_is_refused_before_taking_anything(gateway: Gateway) -> None:
    gateway.replica.client.available = False
    with pytest.raises(EngineUnreachable):
        await gateway.complete("ft:a")
    assert gateway.holds_nothing()
    assert gateway.admin.calls == []
