"""Chat limits through the real chat router on a real uvicorn server, in front of a stand-in for vLLM
(also on uvicorn) that streams slowly: the concurrency slot comes back on success, on an engine
error, at the end of a stream and when the client goes away mid-stream; caps are 400s naming the
parameter; each organization's requests carry their own `cache_salt`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from service import api
from service.auth import Principal
from service.catalog import ModelCatalog
from service.deps import Components, components, principal
from service.engine.adapters import AdapterRegistry
from service.engine.client import EngineClient
from service.engine.fleet import EngineFleet
from service.engine.limits import ChatCaps, ChatLimits
from service.errors import install_error_handlers
from service.jobs.checkpoints import CheckpointStore
from service.jobs.model_records import JobModelRecords
from service.jobs.store import JobStore
from service.store import Database
from tests.service.fake_engine import one_replica
from tests.service.threaded_server import serve_in_thread

MODEL = "tiny"
CAPS = ChatCaps(max_concurrent=2, max_n=4, max_tokens=100)


@dataclass
class FakeEngine:
    """Answers like vLLM: JSON, an SSE stream of `n_chunks` chunks 20 ms apart, or a 500."""

    bodies: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def complete(request: Request) -> Response:
            body = await request.json()
            self.bodies.append(body)
            if body["messages"][0]["content"] == "fail":
                return JSONResponse({"error": {"message": "boom", "type": "x", "code": 500}}, 500)
            if body.get("stream"):
                return StreamingResponse(
                    self._chunks(int(body.get("n_chunks", 3))), media_type="text/event-stream"
                )
            return JSONResponse({"id": "c", "object": "chat.completion", "choices": [], "model": MODEL})

        return app

    async def _chunks(self, n_chunks: int) -> AsyncIterator[bytes]:
        for index in range(n_chunks):
            await asyncio.sleep(0.02)
            yield f"data: {json.dumps({'index': index})}\n\n".encode()
        yield b"data: [DONE]\n\n"


@dataclass
class Gateway:
    url: str
    engine: FakeEngine
    limits: ChatLimits

    def wait_released(self, org_id: str) -> None:
        deadline = time.monotonic() + 5
        while self.limits.in_flight(org_id):
            assert time.monotonic() < deadline, f"{org_id} still holds {self.limits.in_flight(org_id)} slots"
            time.sleep(0.02)


def _org_from_header(request: Request) -> Principal:
    return Principal(request.headers["x-org"])


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    engine = FakeEngine()
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate()
    with serve_in_thread(engine.app()) as engine_url:
        client = EngineClient(engine_url)
        fleet = EngineFleet([one_replica(MODEL, tmp_path, client, AdapterRegistry(client, 2))])
        jobs, checkpoints = JobStore(db), CheckpointStore(db)
        catalog = ModelCatalog(JobModelRecords(jobs, checkpoints), fleet, started_at=0)
        unused: Any = None  # the chat router does not touch keys, files, jobs or webhooks
        parts = Components(
            keys=unused,
            files=unused,
            uploads=unused,
            jobs=jobs,
            checkpoints=checkpoints,
            permissions=unused,
            fine_tuning=unused,
            catalog=catalog,
            fleet=fleet,
            chat_limits=(limits := ChatLimits(CAPS)),
            webhooks=unused,
            outbox=unused,
            webhook_dispatcher=unused,
            graders=unused,
            adapter_downloads=unused,
            adapter_imports=unused,
            model_exports=unused,
        )
        app = FastAPI()
        install_error_handlers(app)
        app.include_router(api.chat.router, prefix="/v1")
        app.dependency_overrides[components] = lambda: parts
        # The organization is whatever the test says it is (authentication is tested elsewhere).
        app.dependency_overrides[principal] = _org_from_header
        with serve_in_thread(app) as url:
            yield Gateway(url, engine, limits)


def _chat(org: str, **fields: Any) -> dict[str, Any]:
    return {
        "json": {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **fields},
        "headers": {"x-org": org},
    }


def test_slot_is_released_after_a_completion_and_after_an_engine_error(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.url) as http:
        for _ in range(3):  # more requests in a row than the limit: each one gave its slot back
            assert http.post("/v1/chat/completions", **_chat("org-a")).status_code == 200
        failing = _chat("org-a")
        failing["json"]["messages"][0]["content"] = "fail"
        for _ in range(3):
            assert http.post("/v1/chat/completions", **failing).status_code == 500
    assert gateway.limits.in_flight("org-a") == 0


def test_stream_holds_its_slot_until_it_ends(gateway: Gateway) -> None:
    stream = _chat("org-a", stream=True, n_chunks=5)
    with (
        httpx.Client(base_url=gateway.url) as http,
        http.stream("POST", "/v1/chat/completions", **stream) as reply,
    ):
        assert reply.status_code == 200
        assert gateway.limits.in_flight("org-a") == 1
        assert b"[DONE]" in reply.read()
    gateway.wait_released("org-a")


def test_client_going_away_mid_stream_releases_the_slot(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.url) as http:
        for _ in range(3):
            with http.stream(
                "POST", "/v1/chat/completions", **_chat("org-a", stream=True, n_chunks=500)
            ) as reply:
                next(reply.iter_raw())  # one chunk, then the connection closes: 10 s of stream unread
            gateway.wait_released("org-a")


def test_over_the_limit_is_429_with_retry_after_and_other_orgs_are_unaffected(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.url) as http:
        long_stream = _chat("org-a", stream=True, n_chunks=500)
        with (
            http.stream("POST", "/v1/chat/completions", **long_stream),
            http.stream("POST", "/v1/chat/completions", **long_stream),
        ):
            refused = http.post("/v1/chat/completions", **_chat("org-a"))
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["code"] == "rate_limit_exceeded"
            assert http.post("/v1/chat/completions", **_chat("org-b")).status_code == 200
        gateway.wait_released("org-a")
        assert http.post("/v1/chat/completions", **_chat("org-a")).status_code == 200


@pytest.mark.parametrize(
    ("param", "value"),
    [("n", 5), ("best_of", 5), ("max_tokens", 101), ("max_completion_tokens", 101)],
)
def test_request_over_a_cap_is_400_naming_it(gateway: Gateway, param: str, value: int) -> None:
    with httpx.Client(base_url=gateway.url) as http:
        at_cap = http.post("/v1/chat/completions", **_chat("org-a", **{param: value - 1}))
        over = http.post("/v1/chat/completions", **_chat("org-a", **{param: value}))
    assert at_cap.status_code == 200
    assert over.status_code == 400
    assert over.json()["error"]["param"] == param
    assert len(gateway.engine.bodies) == 1  # the refused one never reached the engine
    assert gateway.limits.in_flight("org-a") == 0


def test_each_organization_gets_its_own_cache_salt(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.url) as http:
        for org in ("org-a", "org-a", "org-b"):
            http.post("/v1/chat/completions", **_chat(org, cache_salt="chosen-by-caller"))
    salts = [body["cache_salt"] for body in gateway.engine.bodies]
    assert salts[0] == salts[1] != salts[2]
    assert "chosen-by-caller" not in salts
