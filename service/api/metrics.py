"""`GET /metrics`: Prometheus's text format (service/metrics.py), outside /v1. Open, as vLLM's and
most exporters' are, unless the operator asks for a key (`OPENTUNE_METRICS_REQUIRE_KEY=true`):
then any valid API key may scrape it (the figures are server-wide; no label names an organization)."""

import asyncio

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.access import grader_token_refused
from service.deps import ComponentsDep
from service.metrics import render


def metrics_router(require_key: bool) -> APIRouter:
    router = APIRouter(tags=["metrics"])

    @router.get("/metrics", include_in_schema=False)
    async def metrics(request: Request, c: ComponentsDep) -> Response:
        if require_key:
            who = c.keys.authenticate(request.headers.get("authorization"))  # 401 in OpenAI's shape
            if not who.may_call(request.method, "/metrics"):
                raise grader_token_refused()  # a job's grader token: chat completions only
        body = await asyncio.to_thread(render, c.jobs, c.fleet, c.outbox)  # reads the database
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router
