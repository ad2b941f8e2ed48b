"""Sending the outbox's deliveries: signed, to an allowed address, retried with exponential backoff.

Each gateway runs one dispatcher. It claims due deliveries (service/webhooks/outbox.py), posts them
concurrently, and records each outcome: a 2xx answer delivers; anything else (an error status, a
redirect, a timeout, a refused address) is tried again after 5 s, 20 s, 80 s, ... (x4 each time,
at most 4 h apart) until `max_attempts` (10 by default: ~14 h in all) have failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import httpx

from service.config import Settings
from service.errors import InvalidRequest
from service.ids import new_id
from service.metrics import WEBHOOK_DELIVERIES, WEBHOOK_DELIVERY_SECONDS
from service.protocol.webhooks import WebhookEvent, WebhookEventData
from service.webhooks.destinations import DestinationRefused, resolve
from service.webhooks.outbox import Claimed, Outbox
from service.webhooks.signing import signed_headers

logger = logging.getLogger(__name__)

MAX_RETRY_DELAY_S = 4 * 3600


@dataclass(frozen=True)
class DeliveryPolicy:
    allow_local: bool  # http and private addresses (OPENTUNE_WEBHOOKS_ALLOW_HTTP)
    timeout_s: float = 10.0
    first_retry_s: float = 5.0
    max_attempts: int = 10
    poll_s: float = 2.0
    batch: int = 32  # deliveries in flight at once
    batch_per_org: int = 4

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryPolicy:
        return cls(
            allow_local=settings.webhooks_allow_http,
            timeout_s=settings.webhooks_timeout_s,
            first_retry_s=settings.webhooks_first_retry_s,
            max_attempts=settings.webhooks_max_attempts,
            poll_s=settings.webhooks_poll_s,
        )

    def retry_in(self, attempts_made: int) -> float | None:
        """Seconds until the next attempt after `attempts_made` failed ones; None: give up."""
        if attempts_made >= self.max_attempts:
            return None
        return float(min(self.first_retry_s * 4 ** (attempts_made - 1), MAX_RETRY_DELAY_S))


class WebhookDispatcher:
    def __init__(self, outbox: Outbox, policy: DeliveryPolicy) -> None:
        self.outbox = outbox
        self.policy = policy
        # No redirects (a 3xx is a failed attempt: following one could lead anywhere), no
        # environment proxies, and the answer's body is never read.
        self._http = httpx.AsyncClient(timeout=policy.timeout_s, follow_redirects=False, trust_env=False)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._http.aclose()

    async def send(self, url: str, secrets: list[str], webhook_id: str, body: bytes) -> int:
        """One signed POST; the endpoint's status code. Raises DestinationRefused, httpx's errors, or
        TimeoutError when the whole attempt (resolution included) outlasts the timeout: httpx's own
        timeouts are per read, which an endpoint dripping bytes could stretch without end."""
        async with asyncio.timeout(self.policy.timeout_s):
            return await self._post(url, secrets, webhook_id, body)

    async def _post(self, url: str, secrets: list[str], webhook_id: str, body: bytes) -> int:
        destination = await resolve(url, self.policy.allow_local)
        headers = signed_headers(secrets, webhook_id, int(time.time()), body)
        headers["host"] = destination.host_header
        extensions = {"sni_hostname": destination.tls_name} if destination.tls_name else {}
        request = self._http.build_request(
            "POST", destination.url, content=body, headers=headers, extensions=extensions
        )
        response = await self._http.send(request, stream=True)
        await response.aclose()
        return response.status_code

    async def send_test(self, url: str, secrets: list[str], event_type: str) -> int:
        """A sample event, sent once now (`client.webhooks.test`); a 400 when it cannot be sent."""
        event = WebhookEvent.model_validate(
            {
                "id": new_id("evt", separator="_"),
                "created_at": int(time.time()),
                "type": event_type,
                "data": WebhookEventData(id=new_id("ftjob")),
            }
        )
        try:
            body = event.model_dump_json().encode()
            return await self.send(url, secrets, new_id("wh", separator="_"), body)
        except (DestinationRefused, httpx.HTTPError, TimeoutError) as exc:
            raise InvalidRequest(
                f"The test event could not be delivered: {describe(exc)}", code="webhook_delivery_failed"
            ) from None

    async def _run(self) -> None:
        # A pool of deliveries in flight, refilled as each ends: a slow endpoint holds only its own
        # slot (and at most `batch_per_org` of its organization's), never another's deliveries.
        in_flight: dict[asyncio.Task[None], Claimed] = {}
        try:
            while True:
                free = self.policy.batch - len(in_flight)
                try:
                    sending = list(in_flight.values())
                    claimed = await asyncio.to_thread(
                        self.outbox.claim_due, free, self.policy.batch_per_org, sending
                    )
                except Exception:  # the database away for a moment: try again at the next poll
                    logger.exception("Webhook dispatch failed; retrying")
                    claimed = []
                for delivery in claimed:
                    in_flight[asyncio.create_task(self._deliver(delivery))] = delivery
                if not in_flight:
                    await asyncio.sleep(self.policy.poll_s)
                    continue
                done, _ = await asyncio.wait(
                    in_flight, timeout=self.policy.poll_s, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    del in_flight[task]
        finally:  # stopping: their claims pass to the next dispatcher (outbox.py)
            for task in in_flight:
                task.cancel()

    async def _deliver(self, claimed: Claimed) -> None:
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        try:
            status_code = await self.send(claimed.url, claimed.secrets, claimed.delivery_id, claimed.body)
        except (DestinationRefused, httpx.HTTPError, TimeoutError) as exc:
            error = describe(exc)
        except Exception:  # a bug here must not end the dispatcher: the attempt counts as failed
            logger.exception("Webhook delivery %s failed", claimed.delivery_id)
            error = "the delivery failed."
        delivered = status_code is not None and 200 <= status_code < 300
        if not delivered and error is None:
            error = f"The endpoint answered HTTP {status_code}."
        retry_in = None if delivered else self.policy.retry_in(claimed.attempts + 1)
        await asyncio.to_thread(self.outbox.record, claimed.delivery_id, status_code, error, retry_in)
        outcome = "delivered" if delivered else "retrying" if retry_in is not None else "failed"
        WEBHOOK_DELIVERIES.labels(claimed.event_type, outcome).inc()
        WEBHOOK_DELIVERY_SECONDS.observe(time.perf_counter() - started)


def describe(exc: Exception) -> str:
    """What went wrong, without anything of this server (no local addresses or paths)."""
    if isinstance(exc, DestinationRefused):
        return str(exc)
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return "the endpoint did not answer in time."
    return "the endpoint could not be reached."
