"""Checkpoint permissions on SQLite and Postgres: only the owner grants, lists and revokes; a grant
names a known organization; a shared model is found through the catalog's records by the
organization it is shared with, and by nobody else, until the grant or the model is deleted."""

from __future__ import annotations

import pytest

from service.errors import InvalidRequest, NotFound
from service.jobs.checkpoints import CheckpointStore
from service.jobs.model_records import JobModelRecords
from service.jobs.permissions import CheckpointPermissions
from service.jobs.states import JobStatus
from service.jobs.store import JobStore
from service.store import ApiKeyRow, Database, JobRow

OWNER, FRIEND, STRANGER = "org-acme", "org-globex", "org-initech"
MODEL = "ft:base:acme::abcd1234"
CHECKPOINT = f"{MODEL}:ckpt-step-2"


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url)
    database.migrate()
    with database.session() as session:
        for n, org in enumerate((FRIEND, STRANGER)):
            session.add(
                ApiKeyRow(id=f"key-{n}", organization_id=org, key_hash=f"{n}" * 64, hint="sk", created_at=1)
            )
    return database


@pytest.fixture
def records(db: Database) -> JobModelRecords:
    jobs, checkpoints = JobStore(db), CheckpointStore(db)
    job = JobRow(
        id="ftjob-1",
        organization_id=OWNER,
        created_at=1,
        status=JobStatus.RUNNING.value,
        model="base",
        base_model="base",
        model_name=MODEL,
        training_file="file-x",
        seed=1,
        method_type="supervised",
        requested_hyperparameters={},
        integrations=[],
        result_files=[],
    )
    jobs.insert(job)
    checkpoints.add(job, 2, CHECKPOINT, "/adapters/ckpt-2", {})
    jobs.transition(job.id, JobStatus.SUCCEEDED, fine_tuned_model=MODEL, adapter_path="/adapters/final")
    return JobModelRecords(jobs, checkpoints)


def _permissions(db: Database, records: JobModelRecords) -> CheckpointPermissions:
    def owns(org: str, name: str) -> bool:
        return bool(records.fine_tuned(org, name) or records.checkpoints(org, name))

    return CheckpointPermissions(db, owns, default_org="org-default")


def test_a_grant_shares_the_model_with_that_organization_only(db: Database, records: JobModelRecords) -> None:
    permissions = _permissions(db, records)
    assert records.shared_with(FRIEND) == []
    granted = permissions.create(OWNER, CHECKPOINT, [FRIEND, FRIEND]).data
    assert [g.project_id for g in granted] == [FRIEND] and granted[0].object == "checkpoint.permission"
    assert permissions.create(OWNER, CHECKPOINT, [FRIEND]).data[0].id == granted[0].id  # kept as is
    permissions.create(OWNER, MODEL, [FRIEND, "org-default"])
    (shared_checkpoint,) = records.shared_with(FRIEND, CHECKPOINT)
    assert (shared_checkpoint.adapter_path, shared_checkpoint.owned_by) == ("/adapters/ckpt-2", OWNER)
    assert {m.name for m in records.shared_with(FRIEND)} == {MODEL, CHECKPOINT}
    assert [m.name for m in records.shared_with("org-default")] == [MODEL]
    assert records.shared_with(STRANGER) == []

    permissions.delete(OWNER, CHECKPOINT, granted[0].id)
    assert [m.name for m in records.shared_with(FRIEND)] == [MODEL]


def test_only_the_owner_sees_or_changes_grants(db: Database, records: JobModelRecords) -> None:
    permissions = _permissions(db, records)
    grant = permissions.create(OWNER, MODEL, [FRIEND]).data[0]
    for call in (
        lambda: permissions.create(FRIEND, MODEL, [STRANGER]),  # a grantee cannot pass it on
        lambda: permissions.list(FRIEND, MODEL, None, 10, "descending", None),
        lambda: permissions.delete(FRIEND, MODEL, grant.id),
        lambda: permissions.create(OWNER, "ft:base:acme::missing", [FRIEND]),
    ):
        with pytest.raises(NotFound):
            call()
    with pytest.raises(NotFound):
        permissions.delete(OWNER, CHECKPOINT, grant.id)  # a grant of another model
    assert [g.id for g in permissions.list(OWNER, MODEL, None, 10, "descending", None).data] == [grant.id]


@pytest.mark.parametrize("project_id", ["org-nobody", "globex", OWNER, ""])
def test_grants_name_another_known_organization(
    db: Database, records: JobModelRecords, project_id: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        _permissions(db, records).create(OWNER, MODEL, [FRIEND, project_id])
    assert refused.value.param == "project_ids"
    assert records.shared_with(FRIEND) == []  # all of them, or none


def test_listing_pages_orders_and_filters(db: Database, records: JobModelRecords) -> None:
    permissions = _permissions(db, records)
    first = permissions.create(OWNER, MODEL, [FRIEND]).data[0]
    second = permissions.create(OWNER, MODEL, [STRANGER]).data[0]
    page = permissions.list(OWNER, MODEL, None, 1, "ascending", None)
    rest = permissions.list(OWNER, MODEL, page.data[0].id, 1, "ascending", None)
    assert page.has_more and not rest.has_more
    ascending = [g.id for g in page.data + rest.data]
    assert sorted(ascending) == sorted([first.id, second.id])
    descending = permissions.list(OWNER, MODEL, None, 10, "descending", None)
    assert [g.id for g in descending.data] == ascending[::-1]
    only = permissions.list(OWNER, MODEL, None, 10, "descending", STRANGER)
    assert [g.project_id for g in only.data] == [STRANGER]


def test_deleting_the_model_deletes_its_grants(db: Database, records: JobModelRecords) -> None:
    permissions = _permissions(db, records)
    permissions.create(OWNER, CHECKPOINT, [FRIEND])
    (checkpoint,) = records.checkpoints(OWNER, CHECKPOINT)
    records.forget(checkpoint)
    assert records.shared_with(FRIEND) == []
    assert permissions.create(OWNER, MODEL, [FRIEND]).data  # other grants unaffected
