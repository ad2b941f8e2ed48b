"""Webhook endpoints and the events delivered to them, as OpenAI's SDK has them
(`openai/types/webhooks/`): `client.webhooks.create/list/retrieve/update/delete/rotate_secret/test`
and `client.webhooks.unwrap` on the receiving side."""

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

# The event types this server emits; an endpoint may subscribe only to these (OpenAI lists the
# types "available to the authenticated project" at GET /webhook_event_types).
WebhookEventType = Literal["fine_tuning.job.succeeded", "fine_tuning.job.failed", "fine_tuning.job.cancelled"]
WEBHOOK_EVENT_TYPES: tuple[str, ...] = get_args(WebhookEventType)


class WebhookEndpoint(BaseModel):
    id: str
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    created_at: int
    updated_at: int | None = None
    name: str
    url: str
    event_types: list[str]
    signing_secret_hint: str | None = None


class WebhookEndpointWithSecret(WebhookEndpoint):
    """Returned only by create and rotate_secret: the one time the secret is shown."""

    signing_secret: str


class DeletedWebhookEndpoint(BaseModel):
    id: str
    object: Literal["webhook_endpoint.deleted"] = "webhook_endpoint.deleted"
    deleted: bool = True


class WebhookEndpointTestResult(BaseModel):
    object: Literal["webhook_endpoint.test"] = "webhook_endpoint.test"
    webhook_endpoint_id: str
    event_type: str
    status_code: int
    success: Literal[True] = True  # the request completed; status_code says how the endpoint answered


class WebhookEventTypeList(BaseModel):
    object: Literal["list"] = "list"
    data: list[str]


_NAME_MAX = 256
_URL_MAX = 2048


class CreateWebhookEndpointRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=_NAME_MAX)
    url: str = Field(min_length=1, max_length=_URL_MAX)
    event_types: list[WebhookEventType] = Field(min_length=1)


class UpdateWebhookEndpointRequest(BaseModel):
    """Only the fields given change; `event_types` replaces the whole set."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(default=None, min_length=1, max_length=_NAME_MAX)
    url: str | None = Field(default=None, min_length=1, max_length=_URL_MAX)
    event_types: list[WebhookEventType] | None = Field(default=None, min_length=1)


class RotateWebhookSecretRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    keep_old_secret_active_for_24_hours: bool = False


class TestWebhookEndpointRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    __test__ = False  # not a pytest test class, whatever its name

    event_type: WebhookEventType


class WebhookEventData(BaseModel):
    id: str  # the fine-tuning job's id


class WebhookEvent(BaseModel):
    """The body of a delivery: OpenAI's `FineTuningJob{Succeeded,Failed,Cancelled}WebhookEvent`."""

    id: str
    object: Literal["event"] = "event"
    created_at: int
    type: WebhookEventType
    data: WebhookEventData
