"""The job pipeline end to end without processes: real stores (SQLite), the real scheduler, a fake
executor whose trainers the test drives (tests/service/fake_executor.py) and a fake engine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from service.catalog import ModelCatalog
from service.config import Settings
from service.files import FileStore
from service.ids import new_id
from service.jobs.checkpoints import CheckpointStore
from service.jobs.model_records import JobModelRecords
from service.jobs.naming import fine_tuned_model_name
from service.jobs.scheduler import JobScheduler
from service.jobs.states import JobStatus
from service.jobs.store import JobStore
from service.store import Database, JobRow
from tests.service.fake_engine import FakeEngine, fake_fleet
from tests.service.fake_executor import FakeExecutor, FakeRun
from trainer.events import CheckpointEvent, ErrorEvent, MessageEvent, MetricsEvent, ResultEvent

ORG = "org-acme"
pytestmark = pytest.mark.anyio


class World:
    def __init__(
        self,
        tmp_path: Path,
        database_url: str,
        max_concurrent_jobs: int = 1,
        max_retries: int = 2,
        gateway_id: str = "gw-a",
        job_lease_s: float = 30.0,
        trainer_memory_gib: float = 0.0,
        idle_poll_s: float = 0.05,
    ) -> None:
        self.tmp_path = tmp_path
        self.db = Database(database_url)
        self.db.migrate()
        self.jobs = JobStore(self.db)
        self.checkpoints = CheckpointStore(self.db)
        self.files = FileStore(self.db, str(tmp_path / "files"))
        self.engine = FakeEngine()
        fleet = fake_fleet(self.engine, "tiny")
        catalog = ModelCatalog(JobModelRecords(self.jobs, self.checkpoints), fleet, 0)
        self.executor = FakeExecutor(tmp_path / "jobs")
        settings = Settings(
            data_dir=tmp_path,
            trainer_memory_gib=trainer_memory_gib,
            max_concurrent_jobs=max_concurrent_jobs,
            trainer_max_retries=max_retries,
            trainer_stop_grace_s=5.0,
            scheduler_poll_s=0.05,
            scheduler_idle_poll_s=idle_poll_s,
            gateway_id=gateway_id,
            job_lease_s=job_lease_s,
        )
        self.scheduler = JobScheduler(
            settings, self.jobs, self.checkpoints, self.files, catalog, fleet, self.executor
        )

    def job(self, status: JobStatus = JobStatus.QUEUED) -> str:
        job_id = new_id("ftjob")
        self.jobs.insert(
            JobRow(
                id=job_id,
                organization_id=ORG,
                created_at=int(time.time()),
                status=status.value,
                model="tiny",
                base_model="tiny",
                model_name=fine_tuned_model_name("tiny", "acme", None),
                training_file=self.files.create(ORG, _jsonl(), "t.jsonl", "fine-tune").id,
                seed=0,
                method_type="supervised",
                requested_hyperparameters={"n_epochs": 2, "batch_size": 1, "learning_rate_multiplier": 1.0},
                n_training_examples=4,
                integrations=[],
                result_files=[],
            )
        )
        return job_id

    def row(self, job_id: str) -> JobRow:
        return self.jobs.get(None, job_id)

    def messages(self, job_id: str) -> list[str]:
        events = self.jobs.list_events(ORG, job_id, None, 1000).data
        return [e.message for e in reversed(events)]

    async def run_of(self, job_id: str, nth: int = 1) -> FakeRun:
        await until(lambda: len(self.executor.runs_of(job_id)) >= nth)
        return self.executor.runs_of(job_id)[nth - 1]

    def result(self, job_id: str) -> ResultEvent:
        output = Path(self.executor.output(job_id))
        (output / "adapter").mkdir(parents=True, exist_ok=True)
        (output / "metrics.csv").write_text("step,train_loss\n1,2.0\n")
        return ResultEvent(
            adapter_dir=str(output / "adapter"), metrics_csv=str(output / "metrics.csv"), trained_tokens=64
        )


def _jsonl() -> Any:
    import io

    return io.BytesIO(
        b'{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n'
    )


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.fixture
async def world(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    world = World(tmp_path, database_url)
    await world.scheduler.start()
    yield world
    await world.scheduler.stop()


async def test_a_job_runs_records_its_progress_and_succeeds(world: World) -> None:
    job_id = world.job()
    run = await world.run_of(job_id)
    assert run.spec is not None and run.spec.output_dir == Path(world.executor.output(job_id))
    assert world.row(job_id).status == "running" and world.row(job_id).hyperparameters is not None
    checkpoint_path = str(Path(world.executor.output(job_id)) / "checkpoints" / "checkpoint-2")
    run.report(
        MessageEvent(message="Tokenized 4 examples"),
        MetricsEvent(step=1, total_steps=2, train_loss=2.5),
        MetricsEvent(step=2, total_steps=2, train_loss=1.25, valid_loss=1.5),
        CheckpointEvent(
            step=2, path=checkpoint_path, epoch_end=True, metrics={"train_loss": 1.25}, kept_epoch_steps=[2]
        ),
        world.result(job_id),
    )
    run.exit(0)
    await until(lambda: world.row(job_id).status == "succeeded")

    row = world.row(job_id)
    assert row.fine_tuned_model == row.model_name and row.trained_tokens == 64
    assert world.engine.loaded == {row.model_name: str(Path(world.executor.output(job_id)) / "adapter")}
    assert world.files.get(ORG, row.result_files[0]).filename == "step_metrics.csv"
    messages = world.messages(job_id)
    assert "Tokenized 4 examples" in messages
    assert "Step 2/2: training loss=1.2500, validation loss=1.5000" in messages
    assert f"Checkpoint created at step 2: {row.model_name}:ckpt-step-2" in messages
    assert messages[-1] == "The job has successfully completed"
    [checkpoint] = world.checkpoints.of_org(ORG)
    assert (checkpoint.base_model, checkpoint.path) == ("tiny", checkpoint_path)


async def test_a_killed_trainer_is_retried_from_its_checkpoint_and_the_job_succeeds(world: World) -> None:
    job_id = world.job()
    first = await world.run_of(job_id)
    world.executor.checkpoint_steps[job_id] = 40
    first.exit(-9)
    second = await world.run_of(job_id, 2)
    assert world.row(job_id).trainer_retries == 1
    assert (
        "The trainer stopped unexpectedly (signal 9); retrying from step 40, attempt 2 of 3"
        in world.messages(job_id)
    )
    second.report(world.result(job_id))
    second.exit(0)
    await until(lambda: world.row(job_id).status == "succeeded")


async def test_a_trainer_that_keeps_dying_fails_the_job_after_the_retries(world: World) -> None:
    job_id = world.job()
    for attempt in (1, 2, 3):
        (await world.run_of(job_id, attempt)).exit(-9)
    await until(lambda: world.row(job_id).status == "failed")
    row = world.row(job_id)
    assert row.error is not None and row.error["code"] == "training_failed"
    assert row.trainer_retries == 2 and len(world.executor.runs_of(job_id)) == 3
    retries = [m for m in world.messages(job_id) if "retrying" in m]
    assert [m[-14:] for m in retries] == ["attempt 2 of 3", "attempt 3 of 3"]


async def test_an_error_the_trainer_reports_is_not_retried(world: World) -> None:
    job_id = world.job()
    run = await world.run_of(job_id)
    run.report(
        ErrorEvent(
            code="invalid_training_file", message="Example 3: no assistant message", param="training_file"
        )
    )
    run.exit(1)
    await until(lambda: world.row(job_id).status == "failed")
    assert world.row(job_id).error == {
        "code": "invalid_training_file",
        "message": "Example 3: no assistant message",
        "param": "training_file",
    }
    await asyncio.sleep(0.2)
    assert len(world.executor.runs_of(job_id)) == 1


async def test_pausing_stops_the_trainer_and_the_job_stays_paused(world: World) -> None:
    job_id = world.job()
    run = await world.run_of(job_id)
    assert world.jobs.transition(job_id, JobStatus.PAUSED)
    world.scheduler.stop_trainer(job_id)
    await until(lambda: run.returncode is not None)
    await asyncio.sleep(0.2)
    assert run.stop_requests == 1 and world.row(job_id).status == "paused"
    assert world.row(job_id).trainer_retries == 0 and len(world.executor.runs_of(job_id)) == 1


async def test_a_trainer_stopped_by_someone_else_continues_without_using_a_retry(world: World) -> None:
    job_id = world.job()
    world.executor.checkpoint_steps[job_id] = 12
    first = await world.run_of(job_id)
    first.stop()  # e.g. an operator's SIGTERM: the trainer saves a checkpoint and reports `stopped`
    await world.run_of(job_id, 2)
    assert world.row(job_id).trainer_retries == 0
    assert "The trainer was stopped; the job continues from step 12" in world.messages(job_id)


async def test_unknown_lines_never_reach_the_scheduler(world: World) -> None:
    # parse_event drops them (tests/trainer/test_events.py); the pipeline sees only typed events.
    job_id = world.job()
    run = await world.run_of(job_id)
    run.report(MessageEvent(message="still going"))
    await until(lambda: "still going" in world.messages(job_id))
    assert world.row(job_id).status == "running"


async def test_jobs_wait_for_a_free_trainer_slot(world: World) -> None:
    jobs = {world.job(), world.job()}  # created in the same second: either may go first
    await until(lambda: len(world.executor.runs) == 1)
    [run] = world.executor.runs
    [waiting] = jobs - {run.job_id}
    await asyncio.sleep(0.3)
    assert world.executor.runs_of(waiting) == [] and world.row(waiting).status == "queued"
    run.report(world.result(run.job_id))
    run.exit(0)
    await world.run_of(waiting)


async def test_an_idle_scheduler_sleeps_until_something_wakes_it(tmp_path: Path, database_url: str) -> None:
    world = World(tmp_path, database_url, idle_poll_s=60.0)
    await world.scheduler.start()
    try:
        await asyncio.sleep(0.2)  # the first pass found nothing to do
        job_id = world.job()  # written behind the scheduler's back: nobody wakes it
        await asyncio.sleep(0.5)
        assert world.executor.runs_of(job_id) == []
        world.scheduler.notify()  # what creating or resuming a job through the API does
        run = await world.run_of(job_id)
        # With a trainer to follow, it looks every scheduler_poll_s again.
        assert world.scheduler._pause_s() == 0.05
        run.report(world.result(job_id))
        run.exit(0)
        await until(lambda: world.row(job_id).status == "succeeded")
    finally:
        await world.scheduler.stop()


async def test_shutting_down_leaves_running_jobs_for_the_next_gateway(
    tmp_path: Path, database_url: str
) -> None:
    world = World(tmp_path, database_url)
    await world.scheduler.start()
    job_id = world.job()
    run = await world.run_of(job_id)
    await world.scheduler.stop()
    assert run.stop_requests == 1 and world.row(job_id).status == "running"

    # The next gateway finds no trainer to attach to: the job continues from its checkpoint.
    world.executor.checkpoint_steps[job_id] = 8
    after = World(tmp_path, database_url)
    after.executor.checkpoint_steps[job_id] = 8
    await after.scheduler.start()
    try:
        await after.run_of(job_id)
        assert "The server restarted during training; the job continues from checkpoint-8" in after.messages(
            job_id
        )
    finally:
        await after.scheduler.stop()


async def test_a_trainer_still_running_after_a_restart_is_attached_not_started_again(
    tmp_path: Path, database_url: str
) -> None:
    world = World(tmp_path, database_url)
    job_id = world.job(JobStatus.RUNNING)
    survivor = FakeRun(job_id, None, world.executor)
    world.executor.attachable[job_id] = survivor
    await world.scheduler.start()
    try:
        survivor.report(MetricsEvent(step=3, total_steps=4, train_loss=0.5), world.result(job_id))
        survivor.exit(0)
        await until(lambda: world.row(job_id).status == "succeeded")
        assert world.executor.runs == [] and "Step 3/4: training loss=0.5000" in world.messages(job_id)
    finally:
        await world.scheduler.stop()


async def test_jobs_created_on_two_gateways_each_run_exactly_once(tmp_path: Path, database_url: str) -> None:
    a = World(tmp_path, database_url, max_concurrent_jobs=4, gateway_id="gw-a")
    b = World(tmp_path, database_url, max_concurrent_jobs=4, gateway_id="gw-b")
    await a.scheduler.start()
    await b.scheduler.start()
    try:
        job_ids = [(a if i % 2 else b).job() for i in range(8)]
        await until(lambda: len(a.executor.runs) + len(b.executor.runs) == 8)
        await asyncio.sleep(0.5)  # several more passes on both gateways: nothing starts twice
        runs = a.executor.runs + b.executor.runs
        assert sorted(run.job_id for run in runs) == sorted(job_ids)
        assert a.executor.runs and b.executor.runs  # both gateways took work
        for world in (a, b):
            for run in world.executor.runs:
                run.report(world.result(run.job_id))
                run.exit(0)
        await until(lambda: all(a.row(job_id).status == "succeeded" for job_id in job_ids))
    finally:
        await a.scheduler.stop()
        await b.scheduler.stop()


async def test_a_gateway_that_stops_renewing_loses_its_job_to_another(
    tmp_path: Path, database_url: str
) -> None:
    a = World(tmp_path, database_url, gateway_id="gw-a", job_lease_s=1.0)
    b = World(tmp_path, database_url, gateway_id="gw-b", job_lease_s=1.0)
    await a.scheduler.start()
    job_id = a.job()
    stranded = await a.run_of(job_id)
    # A hangs (cut off from the database, say): its loop stops, its trainer keeps running.
    assert a.scheduler._passes._task is not None
    a.scheduler._passes._task.cancel()
    await b.scheduler.start()
    try:
        adopted = await b.run_of(job_id)  # after A's lease expired, from the latest checkpoint
        assert b.row(job_id).owner == "gw-b"
        assert "The gateway supervising it stopped during training" in " ".join(b.messages(job_id))
        # A comes back: its next lease check finds the job taken and kills its own trainer.
        a.scheduler._next_lease_check = 0.0
        await a.scheduler._keep_leases()
        assert stranded.killed and not adopted.killed
        adopted.report(b.result(job_id))
        adopted.exit(0)
        await until(lambda: b.row(job_id).status == "succeeded")
    finally:
        await b.scheduler.stop()
        await a.scheduler.stop()


async def test_trainers_on_a_cluster_do_not_wait_for_this_machines_memory(
    tmp_path: Path, database_url: str
) -> None:
    world = World(tmp_path, database_url, trainer_memory_gib=1e6)  # more than any machine has
    await world.scheduler.start()
    try:
        waiting = world.job()
        await until(lambda: any(m.startswith("Waiting for memory") for m in world.messages(waiting)))
        assert world.executor.runs_of(waiting) == []
        world.executor.shares_gateway_memory = False  # as the Ray executor
        world.scheduler.notify()
        await world.run_of(waiting)
    finally:
        await world.scheduler.stop()
