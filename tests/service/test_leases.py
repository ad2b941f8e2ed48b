"""Job leases (service/jobs/leases.py) between gateways on one database, on SQLite and Postgres:
one owner at a time, adoption only after expiry, a lost job noticed by its old owner."""

from __future__ import annotations

import time

import pytest

from service.jobs.leases import JobLeases
from service.jobs.states import JobStatus
from service.jobs.store import JobStore
from service.store import Database, JobRow


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url)
    database.migrate()
    return database


def _running_job(db: Database, leases: JobLeases, job_id: str = "ftjob-1") -> str:
    jobs = JobStore(db)
    jobs.insert(
        JobRow(
            id=job_id,
            organization_id="org-acme",
            created_at=1,
            status="queued",
            model="tiny",
            base_model="tiny",
            model_name=f"ft:tiny:acme::{job_id[-8:]}",
            training_file="file-x",
            seed=0,
            method_type="supervised",
            requested_hyperparameters={},
            integrations=[],
            result_files=[],
        )
    )
    assert jobs.transition(job_id, JobStatus.RUNNING, {JobStatus.QUEUED}, **leases.claim_fields())
    return job_id


def test_a_live_lease_is_not_adoptable_an_expired_one_is_once(db: Database) -> None:
    a, b, c = (JobLeases(db, name, lease_s=0.5) for name in ("gw-a", "gw-b", "gw-c"))
    job_id = _running_job(db, a)
    assert b.adoptable(own_too=False) == [] and not b.adopt(job_id, "gw-a", own_too=False)
    time.sleep(0.6)
    assert b.adoptable(own_too=False) == [(job_id, "gw-a")]
    # B and C race for it: one conditional update wins.
    assert b.adopt(job_id, "gw-a", own_too=False)
    assert not c.adopt(job_id, "gw-a", own_too=False)
    assert c.adoptable(own_too=False) == []  # B's lease is fresh


def test_renewing_keeps_a_job_and_tells_a_gateway_what_it_lost(db: Database) -> None:
    a, b = JobLeases(db, "gw-a", lease_s=0.5), JobLeases(db, "gw-b", lease_s=0.5)
    kept, lost = _running_job(db, a, "ftjob-kept0001"), _running_job(db, a, "ftjob-lost0001")
    for _ in range(4):  # renewing every 0.2 s keeps both past their first expiry
        time.sleep(0.2)
        assert a.renew([kept, lost]).lost == []
    assert b.adoptable(own_too=False) == []

    # A is cut off from the database for longer than its lease: B adopts one job, ...
    time.sleep(0.6)
    assert b.adopt(lost, "gw-a", own_too=False)
    # ... and A's next renewal keeps the other and reports the one it lost (its trainer is killed).
    check = a.renew([kept, lost])
    assert check.lost == [lost] and check.ended == []
    assert b.adoptable(own_too=False) == []


def test_a_job_paused_elsewhere_is_reported_to_the_gateway_running_it(db: Database) -> None:
    a = JobLeases(db, "gw-a", lease_s=30)
    job_id = _running_job(db, a)
    assert JobStore(db).transition(job_id, JobStatus.PAUSED)  # through another gateway's API
    assert a.renew([job_id]).ended == [job_id]


def test_a_restarted_gateway_takes_its_own_jobs_back_at_once(db: Database) -> None:
    before = JobLeases(db, "host:8000", lease_s=30)
    job_id = _running_job(db, before)
    after, other = JobLeases(db, "host:8000", lease_s=30), JobLeases(db, "host:8001", lease_s=30)
    assert other.adoptable(own_too=True) == []  # not its own, not expired
    assert after.adoptable(own_too=True) == [(job_id, "host:8000")]
    assert after.adopt(job_id, "host:8000", own_too=True)


def test_a_gateway_shutting_down_hands_its_jobs_over_at_once(db: Database) -> None:
    a, b = JobLeases(db, "gw-a", lease_s=30), JobLeases(db, "gw-b", lease_s=30)
    job_id = _running_job(db, a)
    a.release([job_id])
    assert b.adoptable(own_too=False) == [(job_id, "gw-a")]


def test_one_gateway_checks_a_jobs_files_until_its_claim_expires(db: Database) -> None:
    a, b = JobLeases(db, "gw-a", lease_s=30), JobLeases(db, "gw-b", lease_s=30)
    job_id = _running_job(db, a, "ftjob-check001")
    assert not a.claim_file_check(job_id, hold_s=30)  # running, not validating_files
    JobStore(db).update_fields(job_id, status=JobStatus.VALIDATING_FILES.value, owner=None)
    assert a.claim_file_check(job_id, hold_s=0.3)
    assert not b.claim_file_check(job_id, hold_s=30)  # A holds it
    assert a.claim_file_check(job_id, hold_s=0.3)  # A again (restarted mid-check)
    time.sleep(0.4)
    assert b.claim_file_check(job_id, hold_s=30)  # A died mid-check: B checks
