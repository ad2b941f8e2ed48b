"""validating_files -> queued | failed: each job's files checked in a child process.

Checks run as background tasks (a few at a time), so a slow or huge file delays no other job's
start, and whatever goes wrong while handling one job fails that job only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable

from service.config import Settings
from service.engine.fleet import EngineFleet
from service.files import FileStore
from service.jobs.fairness import fair_order
from service.jobs.file_check import FileCheckLimits, FileCheckRequest, check_files
from service.jobs.states import JobStatus
from service.jobs.store import JobStore
from service.jobs.training_options import parse_training_options
from trainer.file_stats import FileProblem, InspectionResult

logger = logging.getLogger(__name__)

# Children checking files at once: each may use a core and up to file_check_memory_gib.
MAX_CONCURRENT_CHECKS = 2
_VALIDATING = {JobStatus.VALIDATING_FILES}


class FileValidator:
    def __init__(
        self,
        settings: Settings,
        jobs: JobStore,
        files: FileStore,
        fleet: EngineFleet,
        on_done: Callable[[], None],
        claim: Callable[[str, float], bool] = lambda job_id, hold_s: True,
    ) -> None:
        self.settings = settings
        self.jobs = jobs
        self.files = files
        self.fleet = fleet
        self.on_done = on_done  # wakes the scheduler: a job may have become queued
        # claim(job_id, hold_s) takes a job's check for this gateway for hold_s seconds, so that
        # gateways sharing a database check each job's files once (JobLeases.claim_file_check).
        self.claim = claim
        self._checks: dict[str, asyncio.Task[None]] = {}
        self.has_pending = False  # whether the last look found jobs waiting for a check

    async def start_pending(self) -> None:
        """Start checking jobs in `validating_files`, up to the concurrency limit, in turn across
        organizations (one organization's many slow files must not hold up another's)."""
        pending = self.jobs.waiting_jobs(JobStatus.VALIDATING_FILES)
        self.has_pending = bool(pending)
        org_of = {job.job_id: job.organization_id for job in pending}
        checking = Counter(org_of.get(job_id) for job_id in self._checks)
        for job_id in fair_order(pending, {org: n for org, n in checking.items() if org}):
            if len(self._checks) >= MAX_CONCURRENT_CHECKS:
                return
            hold_s = self.settings.file_check_timeout_s + 60
            if job_id not in self._checks and await asyncio.to_thread(self.claim, job_id, hold_s):
                task = asyncio.create_task(self._validate_isolated(job_id), name=f"file-check-{job_id}")
                self._checks[job_id] = task

    async def stop(self) -> None:
        for task in list(self._checks.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _validate_isolated(self, job_id: str) -> None:
        try:
            await self.validate(job_id)
        except Exception:
            logger.exception("Validating the files of %s failed", job_id)
            problem = FileProblem(code="internal_error", message="The server could not validate the files.")
            await asyncio.to_thread(self._fail, job_id, problem)
        finally:
            self._checks.pop(job_id, None)
            self.on_done()

    async def validate(self, job_id: str) -> None:
        # Database work in worker threads: a write waiting on SQLite's lock must not stall the event
        # loop, which serves every organization's requests.
        request = await asyncio.to_thread(self._check_request, job_id)
        if request is None:
            return
        limits = FileCheckLimits(
            memory_bytes=int(self.settings.file_check_memory_gib * 2**30),
            timeout_s=self.settings.file_check_timeout_s,
        )
        result = await check_files(request, limits)
        await asyncio.to_thread(self._record, job_id, result)

    def _check_request(self, job_id: str) -> FileCheckRequest | None:
        """What the child checks, or None when a file is gone (the job is failed)."""
        job = self.jobs.get(None, job_id)
        for file_id, param in (
            (job.training_file, "training_file"),
            (job.validation_file, "validation_file"),
        ):
            if file_id and not self.files.usable(job.organization_id, file_id):
                message = f"The {param.replace('_', ' ')} {file_id} was deleted or has expired."
                self._fail(job_id, FileProblem(code=f"invalid_{param}", message=message, param=param))
                return None
        options = parse_training_options(job.job_metadata, self.settings.engine_max_lora_rank)
        return FileCheckRequest(
            training_file=self.files.location_of(job.training_file),
            validation_file=self.files.location_of(job.validation_file) if job.validation_file else None,
            method=job.method_type,
            tokenizer_dir=self.fleet.get(job.base_model).model_path,
            max_seq_length=options.max_seq_length,
            grader=(job.method_options or {}).get("grader"),
        )

    def _record(self, job_id: str, result: InspectionResult) -> None:
        if result.problem is not None:
            self._fail(job_id, result.problem)
            return
        assert result.stats is not None
        self.jobs.transition(
            job_id,
            JobStatus.QUEUED,
            _VALIDATING,
            ["Files validated, moving job to queued state"],
            n_training_examples=result.stats.n_training_examples,
            longest_example_tokens=result.stats.longest_example_tokens,
        )

    def _fail(self, job_id: str, problem: FileProblem) -> None:
        event = (problem.message, "error")
        self.jobs.transition(job_id, JobStatus.FAILED, _VALIDATING, [event], error=problem.model_dump())
