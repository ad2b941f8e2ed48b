"""Chat and text completions: resolved to an engine model (loading its adapter if needed), forwarded."""

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Request, Response

from service.adapters import AdapterLoadError
from service.deps import ComponentsDep, PrincipalDep
from service.engine.proxy import forward
from service.errors import EngineUnavailable, InvalidRequest

router = APIRouter(tags=["chat"])


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if not isinstance(body.get("model"), str):
        raise InvalidRequest("You must provide a model parameter.", param="model")
    return body


async def _complete(request: Request, c: ComponentsDep, org_id: str, path: str) -> Response:
    body = await _json_object(request)
    model = await asyncio.to_thread(c.catalog.resolve, org_id, body["model"])
    base = c.fleet.get(model.base)
    if not base.client.available:
        raise EngineUnavailable("The model engine is restarting; retry shortly.")
    if not model.adapter_path:
        return await forward(base.client, path, body)
    try:
        await base.adapters.acquire(model.name, model.adapter_path)
    except AdapterLoadError as exc:
        raise EngineUnavailable(str(exc)) from exc
    return await forward(base.client, path, body, on_done=lambda: base.adapters.release(model.name))


@router.post("/chat/completions")
async def chat_completions(request: Request, c: ComponentsDep, who: PrincipalDep) -> Response:
    """OpenAI's chat completions, passed through to the engine (streamed as SSE when `stream`)."""
    return await _complete(request, c, who.organization_id, "/v1/chat/completions")


@router.post("/completions")
async def completions(request: Request, c: ComponentsDep, who: PrincipalDep) -> Response:
    return await _complete(request, c, who.organization_id, "/v1/completions")
