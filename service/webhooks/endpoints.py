"""An organization's webhook endpoints: create, list, retrieve, update, delete, rotate the secret.
Every call is scoped to the caller's organization: another organization's endpoint is not found."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from service.errors import InvalidRequest, NotFound
from service.ids import new_id
from service.pagination import paginate
from service.protocol.common import IdCursorPage
from service.protocol.webhooks import (
    CreateWebhookEndpointRequest,
    DeletedWebhookEndpoint,
    UpdateWebhookEndpointRequest,
    WebhookEndpoint,
    WebhookEndpointWithSecret,
)
from service.store import Database, WebhookDeliveryRow, WebhookEndpointRow
from service.webhooks.destinations import check_url
from service.webhooks.signing import new_signing_secret, secret_hint

OLD_SECRET_GRACE_S = 24 * 3600  # rotate_secret(keep_old_secret_active_for_24_hours=True)


class WebhookEndpoints:
    def __init__(self, db: Database, allow_local: bool, max_per_org: int) -> None:
        self.db = db
        self.allow_local = allow_local
        self.max_per_org = max_per_org

    def create(self, org_id: str, request: CreateWebhookEndpointRequest) -> WebhookEndpointWithSecret:
        url = check_url(request.url, self.allow_local)
        now = int(time.time())
        row = WebhookEndpointRow(
            id=new_id("we", separator="_"),
            organization_id=org_id,
            created_at=now,
            updated_at=now,
            name=request.name,
            url=url,
            event_types=_unique(request.event_types),
            signing_secret=new_signing_secret(),
        )
        with self.db.session() as session:
            count = select(func.count()).where(WebhookEndpointRow.organization_id == org_id)
            if int(session.scalar(count) or 0) >= self.max_per_org:
                raise InvalidRequest(
                    f"An organization may have at most {self.max_per_org} webhook endpoints.",
                    code="webhook_endpoint_limit_reached",
                )
            session.add(row)
        return with_secret(row)

    def list(self, org_id: str, after: str | None, limit: int) -> IdCursorPage[WebhookEndpoint]:
        """Newest first."""
        with self.db.session() as session:
            query = (
                select(WebhookEndpointRow)
                .where(WebhookEndpointRow.organization_id == org_id)
                .order_by(WebhookEndpointRow.created_at.desc(), WebhookEndpointRow.id.desc())
            )
            rows = list(session.scalars(query))
        page, has_more = paginate(rows, after, limit, lambda r: r.id)
        return IdCursorPage[WebhookEndpoint](data=[to_wire(r) for r in page], has_more=has_more)

    def get(self, org_id: str, endpoint_id: str) -> WebhookEndpointRow:
        with self.db.session() as session:
            return self._owned(session, org_id, endpoint_id)

    def retrieve(self, org_id: str, endpoint_id: str) -> WebhookEndpoint:
        return to_wire(self.get(org_id, endpoint_id))

    def update(self, org_id: str, endpoint_id: str, request: UpdateWebhookEndpointRequest) -> WebhookEndpoint:
        changes: dict[str, object] = {}
        if request.name is not None:
            changes["name"] = request.name
        if request.url is not None:
            changes["url"] = check_url(request.url, self.allow_local)
        if request.event_types is not None:
            changes["event_types"] = _unique(request.event_types)
        with self.db.session() as session:
            row = self._owned(session, org_id, endpoint_id)
            # "Tests and unchanged updates do not advance" updated_at (OpenAI's field description).
            if any(getattr(row, name) != value for name, value in changes.items()):
                for name, value in changes.items():
                    setattr(row, name, value)
                row.updated_at = int(time.time())
            return to_wire(row)

    def delete(self, org_id: str, endpoint_id: str) -> DeletedWebhookEndpoint:
        """The endpoint and whatever was still to be delivered to it."""
        with self.db.session() as session:
            row = self._owned(session, org_id, endpoint_id)
            session.execute(delete(WebhookDeliveryRow).where(WebhookDeliveryRow.endpoint_id == row.id))
            session.delete(row)
        return DeletedWebhookEndpoint(id=endpoint_id)

    def rotate_secret(self, org_id: str, endpoint_id: str, keep_old: bool) -> WebhookEndpointWithSecret:
        now = int(time.time())
        with self.db.session() as session:
            row = self._owned(session, org_id, endpoint_id)
            row.previous_secret = row.signing_secret if keep_old else None
            row.previous_secret_expires_at = now + OLD_SECRET_GRACE_S if keep_old else None
            row.signing_secret = new_signing_secret()
            row.updated_at = now
            return with_secret(row)

    def _owned(self, session: Session, org_id: str, endpoint_id: str) -> WebhookEndpointRow:
        row = session.get(WebhookEndpointRow, endpoint_id)
        if row is None or row.organization_id != org_id:
            raise NotFound(f"No such webhook endpoint: {endpoint_id}", param="webhook_endpoint_id")
        return row


def signing_secrets(row: WebhookEndpointRow, now: float) -> list[str]:
    """The secrets a delivery is signed with: the current one, and the previous one while it is kept."""
    if row.previous_secret and (row.previous_secret_expires_at or 0) > now:
        return [row.signing_secret, row.previous_secret]
    return [row.signing_secret]


def to_wire(row: WebhookEndpointRow) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row.id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        name=row.name,
        url=row.url,
        event_types=list(row.event_types),
        signing_secret_hint=secret_hint(row.signing_secret),
    )


def with_secret(row: WebhookEndpointRow) -> WebhookEndpointWithSecret:
    return WebhookEndpointWithSecret(**to_wire(row).model_dump(), signing_secret=row.signing_secret)


def _unique(event_types: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(event_types))
