"""The model catalog (service/catalog.py): what a name serves and trains from, per organization.
With fake records first (the catalog's own rules), then with the real records on SQLite."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from service.catalog import ModelCatalog, ServedModel
from service.errors import InvalidRequest, NotFound, PermissionDenied
from service.jobs.checkpoints import CheckpointStore
from service.jobs.model_records import JobModelRecords
from service.jobs.states import JobStatus
from service.jobs.store import JobStore
from service.store import Database, JobRow
from tests.service.fake_engine import FakeEngine, fake_fleet

pytestmark = pytest.mark.anyio


ACME, GLOBEX = "org-acme", "org-globex"
FT = ServedModel("ft:llama-8b:acme::Fine0001", 5, ACME, base="llama-8b", adapter_path="/a", job_id="ftjob-1")
CKPT = ServedModel(
    f"{FT.name}:ckpt-step-10", 4, ACME, base="llama-8b", adapter_path="/c", checkpoint_id="ckpt-1"
)


class FakeRecords:
    def __init__(self) -> None:
        self.models = {ACME: [FT]}
        self.checkpoint_models = {ACME: [CKPT]}
        self.shared: dict[str, list[ServedModel]] = {}
        self.forgotten: list[ServedModel] = []

    def fine_tuned(self, org_id: str, name: str | None = None) -> list[ServedModel]:
        return [m for m in self.models.get(org_id, []) if name in (None, m.name)]

    def checkpoints(self, org_id: str, name: str | None = None) -> list[ServedModel]:
        return [m for m in self.checkpoint_models.get(org_id, []) if name in (None, m.name)]

    def shared_with(self, org_id: str, name: str | None = None) -> list[ServedModel]:
        return [m for m in self.shared.get(org_id, []) if name in (None, m.name)]

    def forget(self, model: ServedModel) -> None:
        self.forgotten.append(model)


@pytest.fixture
def records() -> FakeRecords:
    return FakeRecords()


@pytest.fixture
def catalog(records: FakeRecords) -> ModelCatalog:
    return ModelCatalog(records, fake_fleet(FakeEngine(), "qwen-0.5b", "llama-8b"), started_at=1)


def test_a_name_resolves_to_what_it_serves_on_which_base(catalog: ModelCatalog) -> None:
    assert catalog.resolve(ACME, "llama-8b") == ServedModel("llama-8b", 1, "system", base="llama-8b")
    assert catalog.resolve(ACME, FT.name) == FT
    assert catalog.resolve(ACME, CKPT.name) == CKPT


def test_another_organizations_model_does_not_exist_for_the_caller(catalog: ModelCatalog) -> None:
    with pytest.raises(NotFound) as found:
        catalog.resolve(GLOBEX, FT.name)
    assert found.value.code == "model_not_found" and "qwen-0.5b, llama-8b" in found.value.message
    assert catalog.resolve(GLOBEX, "qwen-0.5b").base == "qwen-0.5b"


def test_listing_shows_bases_then_the_callers_models(catalog: ModelCatalog) -> None:
    assert [m.id for m in catalog.list(ACME).data] == ["qwen-0.5b", "llama-8b", FT.name, CKPT.name]
    assert [m.id for m in catalog.list(GLOBEX).data] == ["qwen-0.5b", "llama-8b"]


def test_a_job_trains_from_a_base_or_from_the_callers_fine_tuned_model(catalog: ModelCatalog) -> None:
    assert catalog.trainable(ACME, "qwen-0.5b").adapter_path is None
    assert catalog.trainable(ACME, CKPT.name) == CKPT
    with pytest.raises(InvalidRequest) as refused:
        catalog.trainable(GLOBEX, FT.name)
    assert refused.value.code == "model_not_available" and refused.value.param == "model"


async def test_deleting_a_model_unloads_it_and_forgets_it(records: FakeRecords) -> None:
    engine = FakeEngine()
    catalog = ModelCatalog(records, fake_fleet(engine, "llama-8b"), started_at=1)
    deleted = await catalog.delete(ACME, CKPT.name)
    assert deleted.deleted and engine.unloads() == [] and records.forgotten == [CKPT]  # never loaded
    with pytest.raises(PermissionDenied):
        await catalog.delete(ACME, "llama-8b")
    with pytest.raises(NotFound):
        await catalog.delete(GLOBEX, FT.name)
    assert records.forgotten == [CKPT]


def test_real_records_come_from_succeeded_jobs_and_their_checkpoints(
    tmp_path: Path, database_url: str
) -> None:
    db = Database(database_url)
    db.migrate()
    jobs, checkpoints = JobStore(db), CheckpointStore(db)
    records = JobModelRecords(jobs, checkpoints)
    adapter = tmp_path / "adapter"
    adapter.mkdir()

    def job(job_id: str, org: str, status: JobStatus) -> JobRow:
        row = JobRow(
            id=job_id,
            organization_id=org,
            created_at=int(time.time()),
            status=status.value,
            model="my/base:v1",
            base_model="my/base:v1",  # a base whose name has ':' and '/': no parsing of names
            model_name=f"ft:my/base:v1:{org[4:]}::{job_id[-8:]}",
            training_file="file-x",
            seed=0,
            method_type="supervised",
            requested_hyperparameters={},
            integrations=[],
            result_files=[],
        )
        jobs.insert(row)
        return row

    done = job("ftjob-Done0001", ACME, JobStatus.RUNNING)
    jobs.transition(done.id, JobStatus.SUCCEEDED, fine_tuned_model=done.model_name, adapter_path=str(adapter))
    job("ftjob-Runs0001", ACME, JobStatus.RUNNING)
    job("ftjob-Else0001", GLOBEX, JobStatus.SUCCEEDED)
    checkpoints.add(done, 10, f"{done.model_name}:ckpt-step-10", str(tmp_path / "ckpt"), {"train_loss": 1.0})

    [model] = records.fine_tuned(ACME)
    assert (model.name, model.base, model.adapter_path) == (done.model_name, "my/base:v1", str(adapter))
    [checkpoint] = records.checkpoints(ACME, f"{done.model_name}:ckpt-step-10")
    assert checkpoint.base == "my/base:v1" and checkpoint.job_id == done.id
    assert records.checkpoints(GLOBEX) == [] and records.fine_tuned(GLOBEX) == []  # no model set

    records.forget(model)
    assert records.fine_tuned(ACME) == [] and not adapter.exists()
    records.forget(checkpoint)
    assert records.checkpoints(ACME) == []


@pytest.mark.anyio
async def test_a_shared_model_is_listed_served_and_trainable_but_only_its_owner_deletes_it(
    catalog: ModelCatalog, records: FakeRecords
) -> None:
    other = "org-globex"
    with pytest.raises(NotFound):
        catalog.resolve(other, CKPT.name)
    records.shared[other] = [CKPT]
    assert catalog.resolve(other, CKPT.name) == CKPT
    assert catalog.trainable(other, CKPT.name) == CKPT
    assert CKPT.name in [m.id for m in catalog.list(other).data]
    assert catalog.owns(ACME, CKPT.name) and not catalog.owns(other, CKPT.name)
    with pytest.raises(NotFound):
        await catalog.delete(other, CKPT.name)
    assert records.forgotten == []
