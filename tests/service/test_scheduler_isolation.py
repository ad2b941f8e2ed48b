"""No single job stops the scheduler: what goes wrong with one job fails that job, and the pass
goes on. Real stores and scheduler; no engine or trainer is started (none of these jobs gets that far;
file checks run as the real child process)."""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from service.catalog import ModelCatalog
from service.config import Settings
from service.engine.adapters import AdapterRegistry
from service.engine.client import EngineClient
from service.engine.fleet import EngineFleet
from service.files import FileStore
from service.ids import new_id
from service.jobs.checkpoints import CheckpointStore
from service.jobs.local_executor import LocalProcessExecutor
from service.jobs.model_records import JobModelRecords
from service.jobs.naming import fine_tuned_model_name
from service.jobs.scheduler import JobScheduler
from service.jobs.states import JobStatus
from service.jobs.store import JobStore
from service.store import Database, FileRow, JobRow
from tests.service.fake_engine import one_replica

ORG = "org-acme"
GOOD = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
HOSTILE = {"messages": [{"role": [], "content": "x"}]}


class World:
    def __init__(self, tmp_path: Path, tiny_model: Path, max_concurrent_jobs: int) -> None:
        self.db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
        self.db.migrate()
        self.jobs = JobStore(self.db)
        self.files = FileStore(self.db, str(tmp_path / "files"))
        checkpoints = CheckpointStore(self.db)
        client = EngineClient("http://127.0.0.1:9")  # never called by these jobs
        fleet = EngineFleet([one_replica("tiny", tiny_model, client, AdapterRegistry(client, 2))])
        catalog = ModelCatalog(JobModelRecords(self.jobs, checkpoints), fleet, 0)
        settings = Settings(
            data_dir=tmp_path, trainer_memory_gib=0.0, max_concurrent_jobs=max_concurrent_jobs
        )
        self.scheduler = JobScheduler(
            settings,
            self.jobs,
            checkpoints,
            self.files,
            catalog,
            fleet,
            LocalProcessExecutor(str(tmp_path / "jobs"), tmp_path / "jobs"),
        )

    def upload(self, records: list[Any], org: str = ORG) -> str:
        data = "".join(json.dumps(r) + "\n" for r in records).encode()
        return self.files.create(org, io.BytesIO(data), "t.jsonl", "fine-tune", expires_after_s=3600).id

    def expire(self, file_id: str) -> None:
        with self.db.session() as session:
            session.execute(
                update(FileRow).where(FileRow.id == file_id).values(expires_at=int(time.time()) - 1)
            )

    def job(self, file_id: str, status: JobStatus, base: str = "tiny", **fields: Any) -> str:
        job_id = new_id("ftjob")
        row = JobRow(
            id=job_id,
            organization_id=ORG,
            created_at=int(time.time()),
            status=status.value,
            model=fields.pop("model", "tiny"),
            base_model=base,
            model_name=fine_tuned_model_name(base, "acme", None),
            training_file=file_id,
            seed=0,
            method_type=fields.pop("method_type", "supervised"),
            requested_hyperparameters=fields.pop("requested_hyperparameters", {}),
            n_training_examples=12,
            integrations=[],
            result_files=[],
            **fields,
        )
        self.jobs.insert(row)
        return job_id

    def error_of(self, job_id: str) -> dict[str, Any]:
        row = self.jobs.get(None, job_id)
        assert row.status == JobStatus.FAILED.value, (job_id, row.status)
        assert row.error is not None
        return row.error


async def _validate_all(world: World) -> None:
    deadline = time.monotonic() + 120
    while world.jobs.ids_in_status(JobStatus.VALIDATING_FILES):
        assert time.monotonic() < deadline
        await world.scheduler.run_pass()
        await asyncio.sleep(0.1)


def test_file_validation_fails_only_the_job_that_breaks(tmp_path: Path, tiny_model: Path) -> None:
    world = World(tmp_path, tiny_model, max_concurrent_jobs=0)  # nothing is started
    good = world.upload([GOOD] * 12)
    expired = world.upload([GOOD] * 12)
    world.expire(expired)
    hostile_job = world.job(world.upload([HOSTILE] * 10), JobStatus.VALIDATING_FILES)
    unknown_base_job = world.job(good, JobStatus.VALIDATING_FILES, base="ghost")  # raises KeyError
    expired_job = world.job(expired, JobStatus.VALIDATING_FILES)
    good_job = world.job(good, JobStatus.VALIDATING_FILES)

    asyncio.run(_validate_all(world))

    assert world.error_of(hostile_job)["code"] == "invalid_training_file"
    assert "Example 1, message 1: unrecognized role (a list)" in world.error_of(hostile_job)["message"]
    assert world.error_of(unknown_base_job)["code"] == "internal_error"
    assert (
        world.error_of(expired_job)["message"] == f"The training file {expired} was deleted or has expired."
    )
    row = world.jobs.get(None, good_job)
    assert row.status == JobStatus.QUEUED.value
    assert row.n_training_examples == 12 and (row.longest_example_tokens or 0) > 0
    for job_id in (hostile_job, unknown_base_job, expired_job):
        assert str(tmp_path) not in world.error_of(job_id)["message"]


def test_starting_jobs_fails_only_the_job_that_breaks(tmp_path: Path, tiny_model: Path) -> None:
    world = World(tmp_path, tiny_model, max_concurrent_jobs=1)
    good = world.upload([GOOD] * 12)
    expired = world.upload([GOOD] * 12)
    world.expire(expired)
    unknown_base_job = world.job(good, JobStatus.QUEUED, base="ghost")  # raises KeyError
    nan_beta_job = world.job(
        good, JobStatus.QUEUED, method_type="dpo", requested_hyperparameters={"beta": float("nan")}
    )
    expired_job = world.job(expired, JobStatus.QUEUED)
    # Last in line: reached only if the pass went on past the others (its model no longer exists).
    orphan_job = world.job(good, JobStatus.QUEUED, model="ft:tiny:acme::gone1234")

    asyncio.run(world.scheduler.run_pass())

    assert world.error_of(unknown_base_job)["code"] == "internal_error"
    nan_error = world.error_of(nan_beta_job)
    assert nan_error["code"] == "invalid_hyperparameters" and "beta" in nan_error["message"]
    assert world.error_of(expired_job)["code"] == "invalid_training_file"
    assert world.error_of(orphan_job)["code"] == "model_not_found"
    assert not (tmp_path / "jobs" / nan_beta_job).exists()  # no job folder, no trainer


def test_expired_and_deleted_files_are_purged_with_their_tokenized_data(
    tmp_path: Path, tiny_model: Path
) -> None:
    world = World(tmp_path, tiny_model, max_concurrent_jobs=0)
    expiring, deleted, kept = world.upload([GOOD] * 12), world.upload([GOOD] * 12), world.upload([GOOD] * 12)
    acme_cache = world.scheduler.housekeeping.token_cache_dir(ORG)
    other_cache = world.scheduler.housekeeping.token_cache_dir("org-globex")
    assert acme_cache != other_cache
    for file_id in (expiring, deleted, kept):
        (acme_cache / f"{file_id}.0123abcd" / "data").mkdir(parents=True)
    (other_cache / f"{expiring}.0123abcd").mkdir(parents=True)  # another organization's entry

    world.expire(expiring)
    asyncio.run(world.scheduler.run_pass())
    world.files.delete(ORG, deleted)

    assert (
        not Path(world.files.location_of(expiring)).exists()
        and not Path(world.files.location_of(deleted)).exists()
    )
    with pytest.raises(Exception, match="No such File"):
        world.files.get(ORG, expiring)
    assert sorted(p.name for p in acme_cache.iterdir()) == [f"{kept}.0123abcd"]
    assert (other_cache / f"{expiring}.0123abcd").is_dir()
