"""The outbox of webhook deliveries, in the database.

A job's final transition writes its event's deliveries in the same transaction
(`enqueue_job_event`, called by JobStore.transition), so an event exists exactly when the job's end
does: a gateway that dies right after still leaves it to be sent. Dispatchers (one per gateway)
claim due deliveries under a short lease, as gateways claim jobs (service/jobs/leases.py), so one
gateway sends each attempt; a gateway that dies mid-send leaves it to another once the lease ends.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.orm import Session

from service.ids import new_id
from service.protocol.webhooks import WEBHOOK_EVENT_TYPES, WebhookEvent, WebhookEventData
from service.store import Database, JobRow, WebhookDeliveryRow, WebhookEndpointRow
from service.webhooks.endpoints import signing_secrets

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


def enqueue_job_event(session: Session, job_id: str, status: str) -> int:
    """Deliveries of `fine_tuning.job.<status>` to the job's organization's endpoints that take
    it, in the caller's transaction; how many."""
    event_type = f"fine_tuning.job.{status}"
    if event_type not in WEBHOOK_EVENT_TYPES:
        return 0
    org_id = session.scalar(select(JobRow.organization_id).where(JobRow.id == job_id))
    query = select(WebhookEndpointRow).where(WebhookEndpointRow.organization_id == org_id)
    endpoints = session.scalars(query)
    subscribed = [endpoint for endpoint in endpoints if event_type in endpoint.event_types]
    if not subscribed or org_id is None:
        return 0
    now = int(time.time())
    event = WebhookEvent(
        id=new_id("evt", separator="_"), created_at=now, type=event_type, data=WebhookEventData(id=job_id)
    )
    body = event.model_dump_json()
    for endpoint in subscribed:
        session.add(
            WebhookDeliveryRow(
                id=new_id("wh", separator="_"),
                endpoint_id=endpoint.id,
                organization_id=org_id,
                event_type=event_type,
                payload=body,
                created_at=now,
                status=PENDING,
                attempts=0,
                next_attempt_at=float(now),
            )
        )
    return len(subscribed)


@dataclass(frozen=True)
class Claimed:
    """One attempt to make: what to send, where, signed with which secrets."""

    delivery_id: str
    organization_id: str
    event_type: str
    body: bytes
    url: str
    secrets: list[str]
    attempts: int  # made before this one


class Outbox:
    def __init__(self, db: Database, owner: str, lease_s: float) -> None:
        self.db = db
        self.owner = owner
        self.lease_s = lease_s

    def claim_due(self, limit: int, per_org: int, in_flight: Collection[Claimed] = ()) -> list[Claimed]:
        """Up to `limit` due deliveries, at most `per_org` of any one organization counting its
        ones `in_flight` (being sent by this gateway), so that one organization's backlog or slow
        endpoint never holds back another's deliveries."""
        busy = Counter(delivery.organization_id for delivery in in_flight)
        now = time.time()
        due = (
            WebhookDeliveryRow.status == PENDING,
            WebhookDeliveryRow.next_attempt_at <= now,
            self._free(now),
            WebhookDeliveryRow.id.not_in([delivery.delivery_id for delivery in in_flight]),
        )
        claimed: list[Claimed] = []
        with self.db.session() as session:
            orgs = list(session.scalars(select(WebhookDeliveryRow.organization_id).where(*due).distinct()))
            random.shuffle(orgs)  # when the batch cannot take every organization, each gets its turn
            for org_id in orgs:
                room = min(per_org - busy[org_id], limit - len(claimed))
                if room <= 0:
                    continue
                query = (
                    select(WebhookDeliveryRow.id)
                    .where(WebhookDeliveryRow.organization_id == org_id, *due)
                    .order_by(WebhookDeliveryRow.next_attempt_at)
                    .limit(room)
                )
                for delivery_id in session.scalars(query).all():
                    if self._claim(session, delivery_id, now):
                        claimed.append(self._attempt(session, delivery_id, now))
        return claimed

    def record(
        self, delivery_id: str, status_code: int | None, error: str | None, retry_in: float | None
    ) -> None:
        """The attempt's outcome: delivered on a 2xx; otherwise due again in `retry_in` seconds, or
        failed for good when that is None."""
        delivered = status_code is not None and 200 <= status_code < 300
        values: dict[str, object] = {
            "attempts": WebhookDeliveryRow.attempts + 1,
            "last_status_code": status_code,
            "last_error": (error or "")[:500] or None,
            "owner": None,
            "lease_expires_at": None,
        }
        if delivered or retry_in is None:
            values |= {"status": DELIVERED if delivered else FAILED, "finished_at": int(time.time())}
        else:
            values["next_attempt_at"] = time.time() + retry_in
        with self.db.session() as session:
            session.execute(
                update(WebhookDeliveryRow)
                .where(WebhookDeliveryRow.id == delivery_id, WebhookDeliveryRow.owner == self.owner)
                .values(**values)
            )

    def pending(self) -> int:
        with self.db.session() as session:
            query = select(func.count()).where(WebhookDeliveryRow.status == PENDING)
            return int(session.scalar(query) or 0)

    def _free(self, now: float) -> ColumnElement[bool]:
        """Not being sent: never claimed, its claimant's lease over, or claimed by this gateway
        (then it is not in flight here, claim_due excludes those: this gateway restarted)."""
        return or_(
            WebhookDeliveryRow.owner.is_(None),
            WebhookDeliveryRow.lease_expires_at < now,
            WebhookDeliveryRow.owner == self.owner,
        )

    def _claim(self, session: Session, delivery_id: str, now: float) -> bool:
        result = session.execute(
            update(WebhookDeliveryRow)
            .where(WebhookDeliveryRow.id == delivery_id, WebhookDeliveryRow.status == PENDING)
            .where(self._free(now))
            .values(owner=self.owner, lease_expires_at=now + self.lease_s)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def _attempt(self, session: Session, delivery_id: str, now: float) -> Claimed:
        delivery = session.get(WebhookDeliveryRow, delivery_id)
        endpoint = session.get(WebhookEndpointRow, delivery.endpoint_id) if delivery else None
        assert delivery is not None and endpoint is not None  # claimed in this transaction
        return Claimed(
            delivery_id=delivery.id,
            organization_id=delivery.organization_id,
            event_type=delivery.event_type,
            body=delivery.payload.encode(),
            url=endpoint.url,
            secrets=signing_secrets(endpoint, now),
            attempts=delivery.attempts,
        )
