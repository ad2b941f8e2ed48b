"""Webhook endpoint routes, at OpenAI's paths (`client.webhooks.*`)."""

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Query

from service.deps import ComponentsDep, PrincipalDep
from service.protocol.common import IdCursorPage
from service.protocol.webhooks import (
    WEBHOOK_EVENT_TYPES,
    CreateWebhookEndpointRequest,
    DeletedWebhookEndpoint,
    RotateWebhookSecretRequest,
    TestWebhookEndpointRequest,
    UpdateWebhookEndpointRequest,
    WebhookEndpoint,
    WebhookEndpointTestResult,
    WebhookEndpointWithSecret,
    WebhookEventTypeList,
)
from service.webhooks.endpoints import signing_secrets

router = APIRouter(tags=["webhooks"])
_ENDPOINT = "/webhook_endpoints/{webhook_endpoint_id}"


@router.post("/webhook_endpoints")
def create_webhook_endpoint(
    c: ComponentsDep, who: PrincipalDep, body: CreateWebhookEndpointRequest
) -> WebhookEndpointWithSecret:
    """The response is the only place the signing secret is shown (until rotate_secret)."""
    return c.webhooks.create(who.organization_id, body)


@router.get("/webhook_endpoints")
def list_webhook_endpoints(
    c: ComponentsDep,
    who: PrincipalDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> IdCursorPage[WebhookEndpoint]:
    return c.webhooks.list(who.organization_id, after, limit)


@router.get(_ENDPOINT)
def retrieve_webhook_endpoint(
    c: ComponentsDep, who: PrincipalDep, webhook_endpoint_id: str
) -> WebhookEndpoint:
    return c.webhooks.retrieve(who.organization_id, webhook_endpoint_id)


@router.post(_ENDPOINT)
def update_webhook_endpoint(
    c: ComponentsDep, who: PrincipalDep, webhook_endpoint_id: str, body: UpdateWebhookEndpointRequest
) -> WebhookEndpoint:
    return c.webhooks.update(who.organization_id, webhook_endpoint_id, body)


@router.delete(_ENDPOINT)
def delete_webhook_endpoint(
    c: ComponentsDep, who: PrincipalDep, webhook_endpoint_id: str
) -> DeletedWebhookEndpoint:
    """Deliveries still pending for it are dropped with it."""
    return c.webhooks.delete(who.organization_id, webhook_endpoint_id)


@router.post(f"{_ENDPOINT}/rotate_secret")
def rotate_webhook_secret(
    c: ComponentsDep,
    who: PrincipalDep,
    webhook_endpoint_id: str,
    body: RotateWebhookSecretRequest | None = None,
) -> WebhookEndpointWithSecret:
    """With `keep_old_secret_active_for_24_hours`, deliveries carry a signature by each secret."""
    keep_old = body.keep_old_secret_active_for_24_hours if body else False
    return c.webhooks.rotate_secret(who.organization_id, webhook_endpoint_id, keep_old)


@router.post(f"{_ENDPOINT}/test")
async def test_webhook_endpoint(
    c: ComponentsDep, who: PrincipalDep, webhook_endpoint_id: str, body: TestWebhookEndpointRequest
) -> WebhookEndpointTestResult:
    """Sends a sample event of the type now, signed as real ones are; reports the answer's status."""
    endpoint = await asyncio.to_thread(c.webhooks.get, who.organization_id, webhook_endpoint_id)
    secrets = signing_secrets(endpoint, time.time())
    status_code = await c.webhook_dispatcher.send_test(endpoint.url, secrets, body.event_type)
    return WebhookEndpointTestResult(
        webhook_endpoint_id=endpoint.id, event_type=body.event_type, status_code=status_code
    )


@router.get("/webhook_event_types")
def list_webhook_event_types() -> WebhookEventTypeList:
    return WebhookEventTypeList(data=list(WEBHOOK_EVENT_TYPES))
