"""Chat and text completions: the body read as a JSON object, then served by
service/engine/serving.py (model, engine, the organization's limits, adapter)."""

import json
from typing import Any

from fastapi import APIRouter, Request, Response

from service.deps import ComponentsDep, PrincipalDep
from service.engine.serving import complete
from service.errors import InvalidRequest

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
    return await complete(c.catalog, c.fleet, c.chat_limits, org_id, path, body)


@router.post("/chat/completions")
async def chat_completions(request: Request, c: ComponentsDep, who: PrincipalDep) -> Response:
    """OpenAI's chat completions, passed through to the engine (streamed as SSE when `stream`)."""
    return await _complete(request, c, who.organization_id, "/v1/chat/completions")


@router.post("/completions")
async def completions(request: Request, c: ComponentsDep, who: PrincipalDep) -> Response:
    return await _complete(request, c, who.organization_id, "/v1/completions")
