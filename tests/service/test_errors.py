"""What clients see for the service's domain errors (service/errors.py): OpenAI's envelope, the
engine's troubles as a retryable 503, anything else as a 500, and never a server path or address."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from service.errors import (
    AdapterLoadError,
    EngineRejected,
    EngineUnreachable,
    ServiceError,
    install_error_handlers,
)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (
            AdapterLoadError("the engine could not load adapter 'ft:a': no file /srv/data/a"),
            503,
            "engine_unavailable",
        ),
        (EngineUnreachable("the engine at http://127.0.0.1:9 is not reachable"), 503, "engine_unavailable"),
        (EngineRejected(500, {"message": "failed on /srv/data/a"}), 500, None),
        (ServiceError("unexpected state of /srv/data"), 500, None),
    ],
)
async def test_clients_get_openai_errors_without_server_details(
    error: Exception, status: int, code: str | None
) -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/v1/chat/completions")
    async def fail() -> None:
        raise error

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as http:
        answer = await http.post("/v1/chat/completions")
    assert answer.status_code == status
    assert answer.json()["error"]["type"] == "server_error"
    assert answer.json()["error"]["code"] == code
    assert answer.headers.get("retry-after") == ("5" if status == 503 else None)
    assert "/srv" not in answer.text and "127.0.0.1" not in answer.text
