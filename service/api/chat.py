"""Chat and text completions: resolved to an engine model (loading its adapter if needed), forwarded
within the caller's organization's limits (service/engine/limits.py)."""

import asyncio
import json
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response

from service.adapters import AdapterLoadError
from service.catalog import ServedModel
from service.deps import ComponentsDep, PrincipalDep
from service.engine.fleet import ServedBase
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
    limits = c.chat_limits
    body = await _json_object(request)
    limits.check_request(body)
    body["cache_salt"] = limits.cache_salt(org_id)
    model = await asyncio.to_thread(c.catalog.resolve, org_id, body["model"])
    base = c.fleet.get(model.base)
    if not base.client.available:
        raise EngineUnavailable("The model engine is restarting; retry shortly.")
    slot = limits.enter(org_id)
    try:
        release_adapter = await _use_adapter(base, model)
    except BaseException:
        slot.release()
        raise

    def done() -> None:
        release_adapter()
        slot.release()

    return await forward(base.client, path, body, on_done=done)


async def _use_adapter(base: ServedBase, model: ServedModel) -> Callable[[], None]:
    """Loads the model's adapter if it has one (held while the request runs); what releases it."""
    if not model.adapter_path:
        return lambda: None
    try:
        await base.adapters.acquire(model.name, model.adapter_path)
    except AdapterLoadError as exc:
        raise EngineUnavailable(str(exc)) from exc
    return lambda: base.adapters.release(model.name)


@router.post("/chat/completions")
async def chat_completions(request: Request, c: ComponentsDep, who: PrincipalDep) -> Response:
    """OpenAI's chat completions, passed through to the engine (streamed as SSE when `stream`)."""
    return await _complete(request, c, who.organization_id, "/v1/chat/completions")


@router.post("/completions")
async def completions(request: Request, c: ComponentsDep, who: PrincipalDep) -> Response:
    return await _complete(request, c, who.organization_id, "/v1/completions")
