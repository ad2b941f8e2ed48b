"""The exports' loop: one asyncio task in the gateway that runs queued exports, each in its own
process, and records how they end.

    queued --(memory free, a slot here)--> running --> succeeded (with its file) | failed
      ^                                       |
      +--- process died / gateway restarted --+   (from scratch, up to max_attempts starts)

Each pass renews this gateway's leases (recovering other gateways' orphans when theirs expire),
fails running exports whose model was deleted (their process is killed), and starts queued ones,
oldest first, while fewer than `max_concurrent` run here and memory admits them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from service.config import Settings
from service.exports.claims import ExportClaims, error
from service.exports.launcher import ExportLauncher, ExportProcess, ExportTask
from service.exports.outcomes import ExportOutcomes, model_deleted
from service.exports.sources import ExportSources, memory_shortfall
from service.files import FileStore
from service.ids import new_id
from service.pass_loop import PassLoop
from service.store import ModelExportRow

logger = logging.getLogger(__name__)

_IDLE_POLL_S = 5.0  # with nothing queued or running here (creations through this gateway wake it)
_STOP_WAIT_S = 10.0


@dataclass(frozen=True)
class ExportPolicy:
    max_concurrent: int
    max_attempts: int
    memory_gib: float | None  # what one export needs; None: estimated from its base's weights
    poll_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ExportPolicy:
        return cls(
            max_concurrent=settings.export_max_concurrent,
            max_attempts=settings.export_max_attempts,
            memory_gib=settings.export_memory_gib,
            poll_s=settings.scheduler_poll_s,
        )


@dataclass
class _Running:
    row: ModelExportRow
    file_id: str
    process: ExportProcess


class ExportRunner:
    def __init__(
        self,
        claims: ExportClaims,
        sources: ExportSources,
        launcher: ExportLauncher,
        files: FileStore,
        policy: ExportPolicy,
        memory: Callable[[Path, float | None], str | None] = memory_shortfall,
    ) -> None:
        self.claims = claims
        self.sources = sources
        self.launcher = launcher
        self.files = files
        self.policy = policy
        self.memory = memory
        self.outcomes = ExportOutcomes(claims, sources, files, policy.max_attempts)
        self._running: dict[str, _Running] = {}
        self._supervisors: set[asyncio.Task[None]] = set()
        self._waiting_for_memory: set[str] = set()  # queued exports whose wait was logged
        self._saw_queued = False
        self._next_lease_check = 0.0
        self._passes = PassLoop("model-exports", self.run_pass, self._pause_s)
        self._shutting_down = False

    @property
    def running(self) -> list[str]:
        return list(self._running)

    async def start(self) -> None:
        await self._recover(own_too=True)  # this gateway's exports of its previous run
        self._next_lease_check = time.monotonic() + self.claims.lease_s / 3
        self._passes.start()

    async def stop(self) -> None:
        """Running exports' processes are killed (an export cannot save half its work) and their
        exports queued again at once, without counting the attempt."""
        self._shutting_down = True
        await self._passes.stop()
        stopped = dict(self._running)
        for run in stopped.values():
            run.process.kill()
        if self._supervisors:
            await asyncio.wait(self._supervisors, timeout=_STOP_WAIT_S)
        await asyncio.to_thread(self.claims.release, list(stopped))
        for run in stopped.values():  # the next attempt writes a file of its own
            await asyncio.to_thread(self.outcomes.discard_output, run.file_id)

    def notify(self) -> None:
        """Look at the queue now (called from request handlers' worker threads)."""
        self._passes.wake()

    def _pause_s(self) -> float:
        return self.policy.poll_s if self._running or self._saw_queued else _IDLE_POLL_S

    async def run_pass(self) -> None:
        """One pass; a step that fails is logged and the next one runs."""
        for step in (self._keep_leases, self._fail_exports_of_deleted_models, self._start_queued):
            try:
                await step()
            except Exception:
                logger.exception("Export step %s failed", step.__name__)

    async def _keep_leases(self) -> None:
        if time.monotonic() < self._next_lease_check:
            return
        self._next_lease_check = time.monotonic() + self.claims.lease_s / 3
        for export_id in await asyncio.to_thread(self.claims.renew, list(self._running)):
            if (run := self._running.get(export_id)) is not None:
                logger.warning("Export %s is no longer this gateway's: its process is killed", export_id)
                run.process.kill()
        await self._recover(own_too=False)

    async def _recover(self, own_too: bool) -> None:
        """Orphaned running exports (their gateway died, or is this one started again): queued to
        run from scratch, or failed after too many attempts; what their attempt wrote is removed."""
        for row in await asyncio.to_thread(self.claims.orphans, own_too):
            if row.id in self._running:
                continue
            status = await asyncio.to_thread(self.claims.recover, row, own_too, self.policy.max_attempts)
            if status is None:
                continue
            logger.info("Export %s was interrupted (attempt %d): now %s", row.id, row.attempts, status)
            await asyncio.to_thread(self.outcomes.discard_output, row.file_id)
            self.launcher.clean(row.id)

    async def _fail_exports_of_deleted_models(self) -> None:
        for export_id, run in list(self._running.items()):
            org_id, model = run.row.organization_id, run.row.model
            if await asyncio.to_thread(self.sources.locate, org_id, model) is not None:
                continue
            if await asyncio.to_thread(self.claims.fail, export_id, model_deleted(model), ("running",)):
                logger.info("The model of export %s was deleted: its process is killed", export_id)
                run.process.kill()

    async def _start_queued(self) -> None:
        queued = await asyncio.to_thread(self.claims.queued)
        self._saw_queued = bool(queued)
        for row in queued:
            if len(self._running) >= self.policy.max_concurrent:
                return
            try:
                await self._start(row)
            except Exception:
                logger.exception("Starting export %s failed", row.id)
                failure = error("export_failed", "The server could not start this export.")
                await asyncio.to_thread(self.claims.fail, row.id, failure, ("queued", "running"))

    async def _start(self, row: ModelExportRow) -> None:
        source = await asyncio.to_thread(self.sources.locate, row.organization_id, row.model)
        if source is None:
            await asyncio.to_thread(self.claims.fail, row.id, model_deleted(row.model), ("queued",))
            return
        shortfall = await asyncio.to_thread(self.memory, source.base_path, self.policy.memory_gib)
        if shortfall is not None:
            if row.id not in self._waiting_for_memory:
                self._waiting_for_memory.add(row.id)
                logger.warning("Export %s waits for memory: %s", row.id, shortfall)
            return
        self._waiting_for_memory.discard(row.id)
        file_id = new_id("file")
        if not await asyncio.to_thread(self.claims.claim, row.id, file_id):
            return  # another gateway was first
        task = ExportTask(row.id, source.base_path, source.adapter, self.files.location_of(file_id))
        process = await self.launcher.start(task)
        run = _Running(row, file_id, process)
        self._running[row.id] = run
        supervisor = asyncio.create_task(self._supervise(row.id, run), name=f"export-{row.id}")
        self._supervisors.add(supervisor)
        supervisor.add_done_callback(self._supervisors.discard)

    async def _supervise(self, export_id: str, run: _Running) -> None:
        try:
            ended = await run.process.wait()
            if not self._shutting_down:
                await asyncio.to_thread(self.outcomes.record, run.row, run.file_id, ended)
        except Exception:
            logger.exception("Supervising export %s failed", export_id)
            run.process.kill()
            failure = error("export_failed", "The server lost track of this export.")
            await asyncio.to_thread(self.claims.fail, export_id, failure, ("running",))
        finally:
            if self._running.get(export_id) is run:
                del self._running[export_id]
            self.launcher.clean(export_id)
            self.notify()
