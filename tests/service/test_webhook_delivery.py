"""Delivering webhooks: signatures the OpenAI SDK verifies, destinations that cannot reach into the
operator's network, and the dispatcher against a real HTTP receiver (a 500 retried, a redirect not
followed, success recorded)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from openai import InvalidWebhookSignatureError, OpenAI

from service.errors import InvalidRequest
from service.jobs.states import JobStatus
from service.jobs.store import JobStore
from service.protocol.webhooks import CreateWebhookEndpointRequest
from service.store import Database, WebhookDeliveryRow
from service.webhooks.destinations import DestinationRefused, check_url, resolve
from service.webhooks.dispatcher import DeliveryPolicy, WebhookDispatcher
from service.webhooks.endpoints import WebhookEndpoints
from service.webhooks.outbox import Outbox
from service.webhooks.signing import new_signing_secret, signed_headers
from tests.service.test_webhook_endpoints import _running_job

SDK = OpenAI(api_key="unused", base_url="http://127.0.0.1:9")


def test_signatures_are_what_the_openai_sdk_verifies() -> None:
    old, new = new_signing_secret(), new_signing_secret()
    body = b'{"id": "evt_1", "type": "fine_tuning.job.succeeded", "created_at": 1, "data": {"id": "ftjob-1"}}'
    headers = signed_headers([new, old], "wh_1", int(time.time()), body)
    for secret in (new, old):  # during a rotation that keeps the old secret, either verifies
        event = SDK.webhooks.unwrap(body, headers, secret=secret)
        assert event.type == "fine_tuning.job.succeeded" and event.data.id == "ftjob-1"
    with pytest.raises(InvalidWebhookSignatureError):
        SDK.webhooks.unwrap(body.replace(b"ftjob-1", b"ftjob-2"), headers, secret=new)
    with pytest.raises(InvalidWebhookSignatureError):
        SDK.webhooks.unwrap(body, headers, secret=new_signing_secret())
    stale = signed_headers([new], "wh_1", int(time.time()) - 3600, body)
    with pytest.raises(InvalidWebhookSignatureError):
        SDK.webhooks.unwrap(body, stale, secret=new)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.test/hook",  # not https
        "ftp://example.test/hook",
        "https:///hook",
        "https://user:pw@example.test/hook",
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.1/hook",
        "https://169.254.169.254/latest/meta-data",  # a cloud's metadata service
        "https://100.64.0.1/hook",
        "https://0.0.0.0/hook",
        "https://localhost/hook",
        "https://example.test:99999/hook",
    ],
)
def test_urls_into_the_operators_network_are_refused(url: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_url(url, allow_local=False)
    assert refused.value.param == "url"


def test_public_https_urls_and_local_ones_when_allowed_pass() -> None:
    assert check_url("https://93.184.215.14:8443/hook?x=1", allow_local=False)
    assert check_url(
        "https://hooks.example.test/in", allow_local=False
    )  # not resolvable now: checked at delivery
    assert check_url("http://127.0.0.1:8080/hook", allow_local=True)


@pytest.mark.anyio
async def test_each_delivery_checks_and_pins_the_address_it_connects_to() -> None:
    with pytest.raises(DestinationRefused):
        await resolve("https://localhost:8443/hook", allow_local=False)
    with pytest.raises(DestinationRefused):
        await resolve("https://does-not-resolve.invalid/hook", allow_local=False)
    pinned = await resolve("https://localhost:8443/hook?a=b", allow_local=True)
    assert pinned.url in ("https://127.0.0.1:8443/hook?a=b", "https://[::1]:8443/hook?a=b")
    assert pinned.host_header == "localhost:8443" and pinned.tls_name == "localhost"


def test_retries_back_off_for_more_than_an_hour_then_stop() -> None:
    policy = DeliveryPolicy(allow_local=False)
    delays = [policy.retry_in(n) for n in range(1, policy.max_attempts)]
    assert delays[:3] == [5.0, 20.0, 80.0]
    assert all(d is not None and d <= 4 * 3600 for d in delays)
    assert sum(d for d in delays if d is not None) > 3600
    assert policy.retry_in(policy.max_attempts) is None


class Receiver:
    """A real HTTP endpoint that answers with the next status of its script."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[bytes, dict[str, str]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((await request.read(), dict(request.headers)))
        if request.query.get("hang"):
            await asyncio.sleep(6)  # past the dispatcher's timeout
        status = self.statuses.pop(0) if self.statuses else 200
        headers = {"location": "http://127.0.0.1:9/elsewhere"} if 300 <= status < 400 else {}
        return web.Response(status=status, headers=headers)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    found = Receiver([])
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield found, f"http://127.0.0.1:{port}/hook"
    await runner.cleanup()


async def _until(condition: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.mark.anyio
async def test_the_dispatcher_retries_until_delivered_and_never_follows_a_redirect(
    tmp_path: Path, receiver: tuple[Receiver, str]
) -> None:
    found, url = receiver
    found.statuses = [500, 302, 204]
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate()
    endpoints = WebhookEndpoints(db, allow_local=True, max_per_org=5)
    request = CreateWebhookEndpointRequest(name="r", url=url, event_types=["fine_tuning.job.failed"])
    secret = endpoints.create("org-a", request).signing_secret
    jobs = JobStore(db)
    jobs.transition(_running_job(jobs, "ftjob-f", "org-a"), JobStatus.FAILED)
    policy = DeliveryPolicy(allow_local=True, first_retry_s=0.1, poll_s=0.05)
    dispatcher = WebhookDispatcher(Outbox(db, "gw-1", lease_s=60), policy)
    await dispatcher.start()
    try:
        await _until(lambda: len(found.received) == 3 and Outbox(db, "x", 1).pending() == 0)
    finally:
        await dispatcher.stop()
    bodies = {body for body, _ in found.received}
    ids = {headers["webhook-id"] for _, headers in found.received}
    assert len(bodies) == 1 and len(ids) == 1  # the same message each time: receivers deduplicate on it
    event = SDK.webhooks.unwrap(found.received[-1][0], found.received[-1][1], secret=secret)
    assert event.type == "fine_tuning.job.failed" and event.data.id == "ftjob-f"
    with db.session() as session:
        (row,) = session.query(WebhookDeliveryRow).all()
        assert (row.status, row.attempts, row.last_status_code) == ("delivered", 3, 204)
    assert json.loads(next(iter(bodies)))["object"] == "event"


@pytest.mark.anyio
async def test_a_test_event_reports_the_endpoints_answer_or_a_clear_error(
    receiver: tuple[Receiver, str],
) -> None:
    found, url = receiver
    found.statuses = [418]
    dispatcher = WebhookDispatcher(Outbox(Database("sqlite://"), "gw", 1), DeliveryPolicy(allow_local=True))
    secret = new_signing_secret()
    try:
        assert await dispatcher.send_test(url, [secret], "fine_tuning.job.cancelled") == 418
        event = SDK.webhooks.unwrap(found.received[0][0], found.received[0][1], secret=secret)
        assert event.type == "fine_tuning.job.cancelled"
        with pytest.raises(InvalidRequest, match="could not be reached") as refused:
            await dispatcher.send_test("http://127.0.0.1:9/closed", [secret], "fine_tuning.job.cancelled")
        assert "127.0.0.1" not in refused.value.message
    finally:
        await dispatcher.stop()


@pytest.mark.anyio
async def test_a_hanging_endpoint_holds_back_no_other_delivery_and_times_out(
    tmp_path: Path, receiver: tuple[Receiver, str]
) -> None:
    found, url = receiver
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate()
    endpoints = WebhookEndpoints(db, allow_local=True, max_per_org=5)
    jobs = JobStore(db)
    for org, endpoint_url in (("org-slow", url + "?hang=1"), ("org-fast", url)):
        request = CreateWebhookEndpointRequest(
            name=org, url=endpoint_url, event_types=["fine_tuning.job.failed"]
        )
        endpoints.create(org, request)
    for n in range(6):  # more than the slow organization's share of the pool
        jobs.transition(_running_job(jobs, f"ftjob-slow{n}", "org-slow"), JobStatus.FAILED)
    policy = DeliveryPolicy(allow_local=True, timeout_s=4, first_retry_s=60, poll_s=0.05, batch_per_org=2)
    dispatcher = WebhookDispatcher(Outbox(db, "gw-1", lease_s=60), policy)
    await dispatcher.start()
    try:
        await _until(lambda: len(found.received) == 2)  # the slow organization's two slots, hanging
        jobs.transition(_running_job(jobs, "ftjob-fast", "org-fast"), JobStatus.FAILED)
        await _until(lambda: any(b"ftjob-fast" in body for body, _ in found.received))
        assert _attempted(db, "org-slow") == 0  # delivered while the slow ones still hang
        await _until(lambda: _attempted(db, "org-slow") >= 2)  # they end at the timeout, to be retried
    finally:
        await dispatcher.stop()
    with db.session() as session:
        errors = {row.last_error for row in session.query(WebhookDeliveryRow) if row.attempts}
    assert "the endpoint did not answer in time." in errors


def _attempted(db: Database, org: str) -> int:
    with db.session() as session:
        rows = session.query(WebhookDeliveryRow).filter(WebhookDeliveryRow.organization_id == org)
        return rows.filter(WebhookDeliveryRow.attempts > 0).count()
