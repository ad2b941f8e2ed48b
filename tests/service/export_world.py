"""A world for tests of merged exports without processes (tests/service/test_model_exports.py,
test_model_export_recovery.py): a real database, file store, catalog and export runners, a fake
engine, and export processes the test drives (tests/service/fake_export_launcher.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import update

from service.catalog import ModelCatalog
from service.exports.claims import ExportClaims
from service.exports.runner import ExportPolicy, ExportRunner
from service.exports.service import ModelExports
from service.exports.sources import ExportSources
from service.exports.store import ExportStore
from service.files import FileStore
from service.jobs.checkpoints import CheckpointStore
from service.jobs.model_records import JobModelRecords
from service.jobs.naming import fine_tuned_model_name
from service.jobs.store import JobStore
from service.protocol.exports import CreateExportRequest
from service.store import Database, JobRow, ModelExportRow
from tests.service.fake_engine import FakeEngine, fake_fleet
from tests.service.fake_export_launcher import FakeExportLauncher, FakeExportProcess

ORG, OTHER = "org-acme", "org-other"
MERGED = CreateExportRequest(format="merged")


class World:
    def __init__(self, tmp_path: Path, database_url: str, max_unfinished: int = 4) -> None:
        self.tmp_path = tmp_path
        self.db = Database(database_url)
        self.db.migrate()
        self.jobs = JobStore(self.db)
        self.files = FileStore(self.db, str(tmp_path / "files"))
        self.engine = FakeEngine()
        fleet = fake_fleet(self.engine, "tiny")
        self.catalog = ModelCatalog(JobModelRecords(self.jobs, CheckpointStore(self.db)), fleet, 0)
        self.sources = ExportSources(self.catalog, fleet)
        self.memory_shortfall: str | None = None  # what memory admission answers
        self.runners: list[ExportRunner] = []
        self.exports = ModelExports(ExportStore(self.db), self.sources, self.wake, max_unfinished)

    def wake(self) -> None:
        for runner in self.runners:
            runner.notify()

    async def start_runner(
        self, gateway: str = "gw-a", lease_s: float = 30.0, max_concurrent: int = 1, max_attempts: int = 3
    ) -> tuple[ExportRunner, FakeExportLauncher]:
        launcher = FakeExportLauncher()
        policy = ExportPolicy(max_concurrent, max_attempts, memory_gib=None, poll_s=0.02)
        claims = ExportClaims(self.db, gateway, lease_s)
        runner = ExportRunner(
            claims, self.sources, launcher, self.files, policy, lambda *_: self.memory_shortfall
        )
        await runner.start()
        self.runners.append(runner)
        return runner, launcher

    def model(self, org: str = ORG) -> str:
        """A fine-tuned model of `org`: a succeeded job with an adapter folder."""
        name = fine_tuned_model_name("tiny", org.removeprefix("org-"), "x")
        adapter = self.tmp_path / name.replace(":", "_") / "adapter"
        adapter.mkdir(parents=True)
        (adapter / "adapter_config.json").write_text("{}")
        self.jobs.insert(
            JobRow(
                id=f"ftjob-{name[-8:]}",
                organization_id=org,
                created_at=int(time.time()),
                status="succeeded",
                model="tiny",
                base_model="tiny",
                model_name=name,
                fine_tuned_model=name,
                adapter_path=str(adapter),
                training_file="file-x",
                seed=0,
                method_type="supervised",
                requested_hyperparameters={},
                integrations=[],
                result_files=[],
            )
        )
        return name

    def row(self, export_id: str) -> ModelExportRow:
        with self.db.session() as session:
            found = session.get(ModelExportRow, export_id)
        assert found is not None
        return found

    def set_row(self, export_id: str, **values: object) -> None:
        with self.db.session() as session:
            session.execute(update(ModelExportRow).where(ModelExportRow.id == export_id).values(**values))


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def process_of(launcher: FakeExportLauncher, export_id: str, nth: int = 1) -> FakeExportProcess:
    await until(lambda: len(launcher.of(export_id)) >= nth)
    return launcher.of(export_id)[nth - 1]
