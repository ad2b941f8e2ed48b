"""The job pipeline's loop: one asyncio task in the gateway that moves jobs through their states.

    validating_files --validation.py--> queued --admission.py--> running --outcomes.py--> done
                                          ^                          |
                                          +-- retried / restarted ---+

Each pass checks new jobs' files, removes expired files, and starts queued jobs (in turn across
organizations) where admission lets them. A task per running job records its trainer's events
(progress.py) and applies how it ended (outcomes.py); where trainers run is the executor's business.
Whatever goes wrong with one job fails that job only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from service.catalog import ModelCatalog
from service.config import Settings
from service.engine.fleet import EngineFleet
from service.files import FileStore
from service.jobs.admission import Fail, Start, Wait, plan
from service.jobs.checkpoints import CheckpointStore
from service.jobs.evaluator import JobEvaluator
from service.jobs.executor import TrainerExecutor, TrainerRun
from service.jobs.fairness import fair_order
from service.jobs.grader_access import GraderAccess
from service.jobs.housekeeping import Housekeeping
from service.jobs.inputs import AdmissionInputs
from service.jobs.leases import JobLeases
from service.jobs.outcomes import FailJob, Outcomes
from service.jobs.progress import ProgressRecorder, Replay
from service.jobs.states import JobStatus
from service.jobs.store import JobStore
from service.jobs.validation import FileValidator
from service.pass_loop import PassLoop
from service.store import JobRow

logger = logging.getLogger(__name__)


class JobScheduler:
    def __init__(
        self,
        settings: Settings,
        jobs: JobStore,
        checkpoints: CheckpointStore,
        files: FileStore,
        catalog: ModelCatalog,
        fleet: EngineFleet,
        executor: TrainerExecutor,
        evaluator: JobEvaluator | None = None,
    ) -> None:
        """`evaluator`: makes the evaluation report of jobs with a validation file (None: none)."""
        self.settings = settings
        self.jobs = jobs
        self.fleet = fleet
        self.executor = executor
        self.leases = JobLeases(jobs.db, settings.resolved_gateway_id, settings.job_lease_s)
        self.grader_access = GraderAccess.from_settings(settings, jobs.db)  # model graders' calls
        self._next_lease_check = 0.0
        self.housekeeping = Housekeeping(settings.data_dir, files)
        claim = self.leases.claim_file_check
        self.validator = FileValidator(settings, jobs, files, fleet, self.notify, claim)
        self.inputs = AdmissionInputs(settings, files, catalog, fleet, executor, self.housekeeping)
        self.progress = ProgressRecorder(jobs, checkpoints)
        self.outcomes = Outcomes(jobs, files, fleet, self.leases.owner, evaluator)
        self._runs: dict[str, TrainerRun] = {}
        self._supervisors: set[asyncio.Task[None]] = set()
        self._told_to_wait: set[str] = set()  # queued jobs whose wait for memory was announced
        self._last_start_by_org: dict[str, float] = {}  # when each organization last had a turn
        self._passes = PassLoop("job-scheduler", self.run_pass, self._pause_s)
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._shutting_down = False
        self._queued_seen = False  # whether the last pass found queued jobs (_pause_s)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._event_loop = asyncio.get_running_loop()
        await self._adopt_orphans(startup=True)
        self._passes.start()

    async def stop(self) -> None:
        """Trainers are asked to checkpoint and exit; their jobs stay `running`, their leases given
        up, for the next gateway to continue (`_adopt_orphans`)."""
        self._shutting_down = True
        await self._passes.stop()
        await self.validator.stop()
        supervised = list(self._runs)
        for run in list(self._runs.values()):
            run.stop()
        if self._supervisors:
            await asyncio.wait(self._supervisors, timeout=self.settings.trainer_stop_grace_s)
        for run in list(self._runs.values()):
            run.kill()
        # Their trainers stopped: another gateway may continue these jobs at once.
        await asyncio.to_thread(self.leases.release, supervised)

    async def _adopt_orphans(self, startup: bool = False) -> None:
        """Running jobs nobody supervises (leases.py): their gateway died, or is this one started
        again. Re-attached to their trainer if it still runs, else back to the queue to continue
        from their latest checkpoint."""
        for job_id, owner in await asyncio.to_thread(self.leases.adoptable, startup):
            if job_id in self._runs or not await asyncio.to_thread(self.leases.adopt, job_id, owner, startup):
                continue
            job = await asyncio.to_thread(self.jobs.get, None, job_id)
            run = await self.executor.attach(job_id, job.trainer_ref)
            restarted = owner in (None, self.leases.owner)
            if run is not None:
                await asyncio.to_thread(self.outcomes.reattached, job_id, restarted)
                self._supervise(job, run, await asyncio.to_thread(self.jobs.last_metrics_step, job_id))
                continue
            step = await asyncio.to_thread(self.executor.latest_checkpoint_step, job_id)
            await asyncio.to_thread(self.outcomes.continue_adopted, job_id, step, restarted)

    async def _keep_leases(self) -> None:
        """Renew this gateway's leases (every third of their length), act on what changed elsewhere,
        and adopt the jobs of gateways that stopped renewing theirs."""
        if time.monotonic() < self._next_lease_check:
            return
        self._next_lease_check = time.monotonic() + self.leases.lease_s / 3
        check = await asyncio.to_thread(self.leases.renew, list(self._runs))
        for job_id in check.lost:
            if (run := self._runs.get(job_id)) is not None:
                logger.warning("Another gateway adopted %s: its trainer here is killed", job_id)
                run.kill()
        for job_id in check.ended:  # paused or cancelled through another gateway
            self._stop_trainer(job_id)
        await self._adopt_orphans()

    # notify() and stop_trainer() are called from request handlers' worker threads: hop onto the loop.

    def notify(self) -> None:
        self._passes.wake()

    def stop_trainer(self, job_id: str) -> None:
        """Ask the job's trainer, if one runs, to checkpoint and exit; the caller already changed the
        job's state (paused, cancelled). Killed if it has not exited after the grace period."""
        if self._event_loop is not None:
            self._event_loop.call_soon_threadsafe(self._stop_trainer, job_id)

    def _stop_trainer(self, job_id: str) -> None:
        run = self._runs.get(job_id)
        if run is not None:
            run.stop()
            asyncio.get_running_loop().call_later(self.settings.trainer_stop_grace_s, run.kill)

    # -- the loop --------------------------------------------------------------------------------

    def _pause_s(self) -> float:
        """Until the next pass: `scheduler_poll_s` while there is work to follow; longer when there
        is none (an idle gateway should cost nothing), since whatever starts work here (a new
        job, a resumed one, a finished check) wakes the loop at once. Never past a lease renewal."""
        if self._runs or self._queued_seen or self.validator.has_pending:
            return self.settings.scheduler_poll_s
        until_leases = self._next_lease_check - time.monotonic()
        return max(self.settings.scheduler_poll_s, min(self.settings.scheduler_idle_poll_s, until_leases))

    async def run_pass(self) -> None:
        """One pass; a step that fails is logged and the next one runs."""
        steps = (
            self._keep_leases,
            self.validator.start_pending,
            self.housekeeping.purge_expired_files,
            self._start_queued,
        )
        for step in steps:
            try:
                await step()
            except Exception:
                logger.exception("Scheduler step %s failed", step.__name__)

    async def _start_queued(self) -> None:
        # Round-robin across organizations (fairness.py), first in, first out within one.
        queued = await asyncio.to_thread(self.jobs.waiting_jobs, JobStatus.QUEUED)
        self._queued_seen = bool(queued)
        running = await asyncio.to_thread(self.jobs.running_by_org)
        for job_id in fair_order(queued, running, self._last_start_by_org):
            if len(self._runs) >= self.settings.max_concurrent_jobs:
                return
            if job_id in self._runs:
                continue  # resumed while its previous trainer is still saving: start once it exits
            try:
                await self._admit(job_id)
            except Exception:
                logger.exception("Starting %s failed", job_id)
                if job_id not in self._runs:
                    failure = FailJob("internal_error", "The server could not start this job.")
                    await asyncio.to_thread(self.outcomes.fail, job_id, failure, {JobStatus.QUEUED})

    async def _admit(self, job_id: str) -> None:
        job = await asyncio.to_thread(self.jobs.get, None, job_id)
        decision = plan(job, await asyncio.to_thread(self.inputs.gather, job))
        if isinstance(decision, Wait):
            if job_id not in self._told_to_wait:
                self._told_to_wait.add(job_id)
                await asyncio.to_thread(self.jobs.add_event, job_id, decision.reason, "warn")
            return
        self._told_to_wait.discard(job_id)
        if isinstance(decision, Fail):
            failure = FailJob(decision.code, decision.message, decision.param)
            await asyncio.to_thread(self.outcomes.fail, job_id, failure, {JobStatus.QUEUED})
            return
        assert isinstance(decision, Start)
        # Minted before the job runs: a job cancelled meanwhile leaves a token that never worked.
        spec = await asyncio.to_thread(self.grader_access.for_trainer, decision.spec)
        if await asyncio.to_thread(self._mark_running, job, decision):
            self._last_start_by_org[job.organization_id] = time.monotonic()
            run = await self.executor.start(spec)
            self._supervise(job, run)
            await asyncio.to_thread(self.jobs.update_fields, job.id, trainer_ref=run.ref)

    def _mark_running(self, job: JobRow, start: Start) -> bool:
        fields: dict[str, Any] = {"hyperparameters": start.hyperparameters, **self.leases.claim_fields()}
        events = ["Fine-tuning job started", *start.notes]
        return self.jobs.transition(job.id, JobStatus.RUNNING, {JobStatus.QUEUED}, events, **fields)

    # -- running jobs ----------------------------------------------------------------------------

    def _supervise(self, job: JobRow, run: TrainerRun, recorded_through_step: int | None = None) -> None:
        self._runs[job.id] = run
        follow = self._follow(job, run, Replay(recorded_through_step))
        task = asyncio.create_task(follow, name=f"trainer-{job.id}")
        self._supervisors.add(task)
        task.add_done_callback(self._supervisors.discard)

    async def _follow(self, job: JobRow, run: TrainerRun, replay: Replay) -> None:
        """Record the trainer's events until it exits, then apply how it ended."""
        started_at = time.monotonic()
        try:
            base = self.fleet.get(job.base_model)
            async for event in run.events():
                if not replay.is_new(event):
                    continue
                for stale in await asyncio.to_thread(self.progress.record, job, event, started_at):
                    await base.unload_everywhere(stale)
            ended = await run.wait()
            resume_step = await asyncio.to_thread(self.executor.latest_checkpoint_step, job.id)
            limit = self.settings.trainer_max_retries
            args = (job.id, ended, limit, resume_step, self._shutting_down)
            await self.outcomes.apply(job, await asyncio.to_thread(self.outcomes.verdict_for, *args))
        except Exception:
            logger.exception("Supervising the trainer of %s failed", job.id)
            run.kill()
            failure = FailJob("internal_error", "The server lost track of the trainer.")
            await asyncio.to_thread(self.outcomes.fail, job.id, failure, {JobStatus.RUNNING})
        finally:
            if self._runs.get(job.id) is run:
                del self._runs[job.id]
            self.notify()
