"""Webhooks through OpenAI's SDK on the shared server: endpoints managed with `client.webhooks.*`,
a real job's `fine_tuning.job.succeeded` delivered to a receiver on localhost and verified with
`client.webhooks.unwrap`, after the receiver first answered 500 (the retry carries the same message);
organizations see only their own endpoints."""

from __future__ import annotations

import io

import openai
import pytest
from openai import OpenAI

from service.webhooks.signing import new_signing_secret
from tests.e2e.conftest import BASE_MODEL, Server
from tests.e2e.jobs import wait_for_job
from tests.e2e.test_metrics import scrape, value
from tests.e2e.test_tenancy import _create_key
from tests.e2e.webhook_receiver import webhook_receiver
from tests.strict_format import jsonl, training_examples

pytestmark = pytest.mark.e2e


def test_a_succeeded_job_is_delivered_signed_and_retried_after_a_500(server: Server, client: OpenAI) -> None:
    before = scrape(server)
    with webhook_receiver(statuses=[500]) as receiver:
        endpoint = client.webhooks.create(
            name="ci", url=receiver.url, event_types=["fine_tuning.job.succeeded", "fine_tuning.job.failed"]
        )
        secret = endpoint.signing_secret
        try:
            file = client.files.create(
                file=("w.jsonl", io.BytesIO(jsonl(training_examples(10)))), purpose="fine-tune"
            )
            job = client.fine_tuning.jobs.create(
                model=BASE_MODEL, training_file=file.id, hyperparameters={"n_epochs": 1, "batch_size": 5}
            )
            done = wait_for_job(client, job.id)
            assert done.status == "succeeded", done.error
            first, retried = receiver.wait_for(2, timeout_s=60)[:2]
        finally:
            client.webhooks.delete(endpoint.id)
    assert first.body == retried.body and first.headers["webhook-id"] == retried.headers["webhook-id"]
    event = client.webhooks.unwrap(retried.body, retried.headers, secret=secret)
    assert event.type == "fine_tuning.job.succeeded" and event.data.id == job.id
    assert event.object == "event" and event.id.startswith("evt_")
    assert done.finished_at is not None and abs(event.created_at - done.finished_at) <= 5
    with pytest.raises(openai.InvalidWebhookSignatureError):
        client.webhooks.unwrap(retried.body, retried.headers, secret=new_signing_secret())
    after = scrape(server)
    for outcome in ("retrying", "delivered"):
        counted = [
            value(samples, "opentune_webhook_deliveries_total", event_type=event.type, outcome=outcome)
            for samples in (before, after)
        ]
        assert counted[1] - counted[0] >= 1, outcome


def test_endpoints_are_managed_as_openais_sdk_expects(client: OpenAI) -> None:
    assert set(client.webhooks.event_types.list().data) == {
        "fine_tuning.job.succeeded",
        "fine_tuning.job.failed",
        "fine_tuning.job.cancelled",
    }
    with webhook_receiver(statuses=[503]) as receiver:
        created = client.webhooks.create(
            name="a", url=receiver.url, event_types=["fine_tuning.job.cancelled"]
        )
        assert created.object == "webhook_endpoint" and created.signing_secret.startswith("whsec_")
        assert created.signing_secret_hint and created.signing_secret not in created.signing_secret_hint
        fetched = client.webhooks.retrieve(created.id)
        assert fetched.url == receiver.url and not hasattr(fetched, "signing_secret")
        assert created.id in [e.id for e in client.webhooks.list()]

        tested = client.webhooks.test(created.id, event_type="fine_tuning.job.cancelled")
        assert (tested.status_code, tested.success, tested.webhook_endpoint_id) == (503, True, created.id)
        (sample,) = receiver.received
        assert client.webhooks.unwrap(sample.body, sample.headers, secret=created.signing_secret).type == (
            "fine_tuning.job.cancelled"
        )

        updated = client.webhooks.update(created.id, name="renamed", event_types=["fine_tuning.job.failed"])
        assert (updated.name, updated.event_types, updated.url) == (
            "renamed",
            ["fine_tuning.job.failed"],
            receiver.url,
        )

        rotated = client.webhooks.rotate_secret(created.id, keep_old_secret_active_for_24_hours=True)
        assert rotated.signing_secret != created.signing_secret
        client.webhooks.test(created.id, event_type="fine_tuning.job.failed")
        both = receiver.received[-1]
        for secret in (rotated.signing_secret, created.signing_secret):  # the old one still verifies
            client.webhooks.unwrap(both.body, both.headers, secret=secret)

        deleted = client.webhooks.delete(created.id)
        assert (deleted.id, deleted.deleted, deleted.object) == (created.id, True, "webhook_endpoint.deleted")
        with pytest.raises(openai.NotFoundError):
            client.webhooks.retrieve(created.id)


def test_bad_endpoints_are_refused_with_openais_error_shape(client: OpenAI) -> None:
    for body in (
        {"name": "x", "url": "ftp://example.test/", "event_types": ["fine_tuning.job.failed"]},
        {"name": "x", "url": "https://example.test/", "event_types": ["batch.completed"]},  # not emitted here
        {"name": "x", "url": "https://example.test/", "event_types": []},
        {"name": "", "url": "https://example.test/", "event_types": ["fine_tuning.job.failed"]},
    ):
        with pytest.raises(openai.BadRequestError) as refused:
            client.webhooks.create(**body)  # type: ignore[arg-type]
        assert refused.value.status_code == 400 and refused.value.body is not None
    with pytest.raises(openai.NotFoundError):
        client.webhooks.update("we_missing", name="x")
    with pytest.raises(openai.BadRequestError, match="could not be delivered"):
        endpoint = client.webhooks.create(
            name="closed", url="http://127.0.0.1:9/hook", event_types=["fine_tuning.job.failed"]
        )
        try:
            client.webhooks.test(endpoint.id, event_type="fine_tuning.job.failed")
        finally:
            client.webhooks.delete(endpoint.id)


def test_organizations_see_only_their_own_endpoints(server: Server) -> None:
    acme = OpenAI(base_url=f"{server.url}/v1", api_key=_create_key(server, "hooks-a"), max_retries=0)
    globex = OpenAI(base_url=f"{server.url}/v1", api_key=_create_key(server, "hooks-b"), max_retries=0)
    mine = acme.webhooks.create(
        name="a", url="https://example.test/a", event_types=["fine_tuning.job.failed"]
    )
    assert [e.id for e in globex.webhooks.list()] == []
    for call in (
        lambda: globex.webhooks.retrieve(mine.id),
        lambda: globex.webhooks.update(mine.id, url="https://example.test/b"),
        lambda: globex.webhooks.rotate_secret(mine.id),
        lambda: globex.webhooks.test(mine.id, event_type="fine_tuning.job.failed"),
        lambda: globex.webhooks.delete(mine.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert acme.webhooks.retrieve(mine.id).url == "https://example.test/a"
