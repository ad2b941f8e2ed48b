"""Webhook endpoints and the outbox, on SQLite and Postgres: scoped to their organization, secrets
rotated with a grace period, one delivery per subscribed endpoint written with the job's end, and
claims that one gateway at a time holds, fairly across organizations."""

from __future__ import annotations

import json
import time

import pytest

from service.errors import InvalidRequest, NotFound
from service.jobs.states import JobStatus
from service.jobs.store import JobStore
from service.protocol.webhooks import CreateWebhookEndpointRequest, UpdateWebhookEndpointRequest
from service.store import Database, JobRow
from service.webhooks.endpoints import WebhookEndpoints, signing_secrets
from service.webhooks.outbox import Outbox

SUCCEEDED = "fine_tuning.job.succeeded"


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url)
    database.migrate()
    return database


def _endpoint(
    endpoints: WebhookEndpoints, org: str, types: list[str], url: str = "https://example.test/h"
) -> str:
    request = CreateWebhookEndpointRequest.model_validate({"name": "hook", "url": url, "event_types": types})
    return endpoints.create(org, request).id


def _running_job(jobs: JobStore, job_id: str, org: str) -> str:
    jobs.insert(
        JobRow(
            id=job_id,
            organization_id=org,
            created_at=1,
            status=JobStatus.RUNNING.value,
            model="base",
            base_model="base",
            model_name=f"ft:base:{job_id}",
            training_file="file-x",
            seed=1,
            method_type="supervised",
            requested_hyperparameters={},
            integrations=[],
            result_files=[],
        )
    )
    return job_id


def test_endpoints_belong_to_their_organization(db: Database) -> None:
    endpoints = WebhookEndpoints(db, allow_local=False, max_per_org=5)
    created = endpoints.create(
        "org-a",
        CreateWebhookEndpointRequest(name="a", url="https://example.test/hook", event_types=[SUCCEEDED]),
    )
    assert created.signing_secret.startswith("whsec_")
    assert created.signing_secret_hint == f"whsec_...{created.signing_secret[-4:]}"
    assert endpoints.retrieve("org-a", created.id).model_dump().get("signing_secret") is None
    for call in (
        lambda: endpoints.retrieve("org-b", created.id),
        lambda: endpoints.update("org-b", created.id, UpdateWebhookEndpointRequest(name="x")),
        lambda: endpoints.rotate_secret("org-b", created.id, keep_old=False),
        lambda: endpoints.delete("org-b", created.id),
    ):
        with pytest.raises(NotFound):
            call()
    assert [e.id for e in endpoints.list("org-a", None, 10).data] == [created.id]
    assert endpoints.list("org-b", None, 10).data == []


def test_update_changes_only_what_is_given_and_unchanged_updates_keep_updated_at(db: Database) -> None:
    endpoints = WebhookEndpoints(db, allow_local=False, max_per_org=5)
    endpoint_id = _endpoint(endpoints, "org-a", [SUCCEEDED])
    before = endpoints.retrieve("org-a", endpoint_id)
    same = endpoints.update("org-a", endpoint_id, UpdateWebhookEndpointRequest(name="hook"))
    assert same.updated_at == before.updated_at
    changed = endpoints.update(
        "org-a",
        endpoint_id,
        UpdateWebhookEndpointRequest.model_validate({"event_types": ["fine_tuning.job.failed"] * 2}),
    )
    assert changed.name == "hook" and changed.url == before.url
    assert changed.event_types == ["fine_tuning.job.failed"]
    with pytest.raises(InvalidRequest) as refused:
        endpoints.update("org-a", endpoint_id, UpdateWebhookEndpointRequest(url="http://example.test/h"))
    assert refused.value.param == "url"


def test_rotation_keeps_the_old_secret_only_when_asked(db: Database) -> None:
    endpoints = WebhookEndpoints(db, allow_local=False, max_per_org=5)
    endpoint_id = _endpoint(endpoints, "org-a", [SUCCEEDED])
    first = endpoints.get("org-a", endpoint_id).signing_secret
    second = endpoints.rotate_secret("org-a", endpoint_id, keep_old=True).signing_secret
    row = endpoints.get("org-a", endpoint_id)
    assert signing_secrets(row, time.time()) == [second, first]
    assert signing_secrets(row, time.time() + 25 * 3600) == [second]  # the grace period is 24 h
    third = endpoints.rotate_secret("org-a", endpoint_id, keep_old=False).signing_secret
    assert signing_secrets(endpoints.get("org-a", endpoint_id), time.time()) == [third]


def test_an_organization_has_a_bounded_number_of_endpoints(db: Database) -> None:
    endpoints = WebhookEndpoints(db, allow_local=False, max_per_org=2)
    _endpoint(endpoints, "org-a", [SUCCEEDED])
    _endpoint(endpoints, "org-a", [SUCCEEDED])
    with pytest.raises(InvalidRequest, match="at most 2"):
        _endpoint(endpoints, "org-a", [SUCCEEDED])
    _endpoint(endpoints, "org-b", [SUCCEEDED])  # another organization's count is its own


def test_a_jobs_end_writes_one_delivery_per_subscribed_endpoint_of_its_organization(db: Database) -> None:
    endpoints = WebhookEndpoints(db, allow_local=False, max_per_org=5)
    jobs = JobStore(db)
    wanted = _endpoint(endpoints, "org-a", [SUCCEEDED, "fine_tuning.job.failed"])
    _endpoint(endpoints, "org-a", ["fine_tuning.job.cancelled"])  # not this event
    _endpoint(endpoints, "org-b", [SUCCEEDED])  # not this organization
    job_id = _running_job(jobs, "ftjob-a1", "org-a")
    outbox = Outbox(db, owner="gw-1", lease_s=60)
    assert outbox.claim_due(10, 10) == []
    assert jobs.transition(job_id, JobStatus.SUCCEEDED, fine_tuned_model="ft:base:a")
    assert not jobs.transition(job_id, JobStatus.CANCELLED)  # no second end, no second event
    claimed = outbox.claim_due(10, 10)
    assert len(claimed) == 1 and outbox.pending() == 1
    event = json.loads(claimed[0].body)
    assert event["type"] == SUCCEEDED and event["data"] == {"id": job_id} and event["object"] == "event"
    assert event["id"].startswith("evt_") and claimed[0].delivery_id.startswith("wh_")
    assert claimed[0].secrets == [endpoints.get("org-a", wanted).signing_secret]


def test_claims_are_exclusive_until_the_lease_ends_and_outcomes_are_recorded(db: Database) -> None:
    endpoints = WebhookEndpoints(db, allow_local=False, max_per_org=5)
    jobs = JobStore(db)
    _endpoint(endpoints, "org-a", [SUCCEEDED])
    jobs.transition(_running_job(jobs, "ftjob-a1", "org-a"), JobStatus.SUCCEEDED)
    first, second = Outbox(db, "gw-1", lease_s=0.5), Outbox(db, "gw-2", lease_s=60)
    (claimed,) = first.claim_due(10, 10)
    assert second.claim_due(10, 10) == []
    time.sleep(0.6)  # gw-1 died mid-send: its lease ends and gw-2 takes the delivery over
    (taken,) = second.claim_due(10, 10)
    first.record(claimed.delivery_id, 200, None, None)  # too late: no longer gw-1's
    assert second.pending() == 1
    second.record(taken.delivery_id, 500, "HTTP 500", retry_in=0.0)
    (again,) = second.claim_due(10, 10)
    assert again.attempts == 1
    second.record(again.delivery_id, 204, None, None)
    assert second.pending() == 0 and second.claim_due(10, 10) == []


def test_one_organizations_backlog_does_not_hold_back_another(db: Database) -> None:
    endpoints = WebhookEndpoints(db, allow_local=False, max_per_org=5)
    jobs = JobStore(db)
    _endpoint(endpoints, "org-busy", [SUCCEEDED])
    _endpoint(endpoints, "org-quiet", [SUCCEEDED])
    for n in range(12):
        jobs.transition(_running_job(jobs, f"ftjob-busy{n}", "org-busy"), JobStatus.SUCCEEDED)
    jobs.transition(_running_job(jobs, "ftjob-quiet", "org-quiet"), JobStatus.SUCCEEDED)
    claimed = Outbox(db, "gw-1", lease_s=60).claim_due(limit=4, per_org=2)
    orgs = [json.loads(c.body)["data"]["id"] for c in claimed]
    assert "ftjob-quiet" in orgs and len(claimed) == 3
