"""running -> succeeded | failed | queued (retried): what a trainer's end means for its job.

`decide` is pure: the job's state now, how the trainer ended, and the retry budget give a verdict.
`Outcomes.apply` carries it out (engine, files, store). As a Kubernetes Job: a trainer that dies
without saying why (killed, crashed, its node lost) is started again from its latest checkpoint up to
`trainer_max_retries` times; a failure the trainer reports itself (bad data, out of memory) is final.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from service.engine.fleet import EngineFleet
from service.errors import AdapterLoadError, EngineUnreachable
from service.files import FileStore
from service.jobs.evaluator import Evaluation, JobEvaluator
from service.jobs.executor import TrainerExit
from service.jobs.states import JobStatus
from service.jobs.store import JobStore
from service.store import JobRow
from trainer.events import ErrorEvent, ResultEvent, StoppedEvent

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Succeed:
    result: ResultEvent


@dataclass(frozen=True)
class FailJob:
    code: str
    message: str
    param: str | None = None


@dataclass(frozen=True)
class Requeue:
    """Back to the queue, to continue from the latest checkpoint; `retry`: it counts against the
    job's retries (the trainer died), else it does not (it was stopped by someone else)."""

    message: str
    retry: bool


@dataclass(frozen=True)
class Leave:
    """Nothing changes: the job was paused or cancelled (or finished) meanwhile, or the gateway is
    shutting down (the next one continues the job, service/jobs/scheduler.py's recovery)."""


Verdict = Succeed | FailJob | Requeue | Leave


@dataclass(frozen=True)
class RetryBudget:
    used: int  # retries already made for the job
    limit: int  # OPENTUNE_TRAINER_MAX_RETRIES


def decide(
    status: JobStatus,
    ended: TrainerExit,
    budget: RetryBudget,
    resume_step: int | None,
    shutting_down: bool = False,
) -> Verdict:
    outcome = ended.outcome
    if isinstance(outcome, ResultEvent) and ended.returncode == 0:
        # A pause that arrived as the last step finished: the adapter is complete, keep it.
        return Succeed(outcome) if status in (JobStatus.RUNNING, JobStatus.PAUSED) else Leave()
    if status is not JobStatus.RUNNING or shutting_down:
        return Leave()
    if isinstance(outcome, ErrorEvent):
        return FailJob(outcome.code, outcome.message, outcome.param)
    where = f"step {resume_step}" if resume_step else "the start"
    if isinstance(outcome, StoppedEvent):
        return Requeue(f"The trainer was stopped; the job continues from {where}", retry=False)
    why = ended.describe()
    attempts = budget.limit + 1
    if budget.used >= budget.limit:
        tries = "once" if attempts == 1 else f"{attempts} times"
        message = f"The trainer stopped unexpectedly ({why}), {tries}; the server's logs have details."
        return FailJob("training_failed", message)
    attempt = budget.used + 2  # the first run was attempt 1
    message = (
        f"The trainer stopped unexpectedly ({why}); retrying from {where}, attempt {attempt} of {attempts}"
    )
    return Requeue(message, retry=True)


class Outcomes:
    def __init__(
        self,
        jobs: JobStore,
        files: FileStore,
        fleet: EngineFleet,
        owner: str,
        evaluator: JobEvaluator | None = None,
    ) -> None:
        self.owner = owner  # this gateway: it changes only the running jobs it owns
        self.jobs = jobs
        self.files = files
        self.fleet = fleet
        self.evaluator = evaluator  # a job with a validation file ends with its report; None: never

    def verdict_for(
        self, job_id: str, ended: TrainerExit, max_retries: int, resume_step: int | None, shutting_down: bool
    ) -> Verdict:
        """`decide` for the job as it is now; nothing for a job another gateway adopted meanwhile
        (its own trainer decides it)."""
        current = self.jobs.get(None, job_id)
        if current.owner not in (None, self.owner):
            return Leave()
        budget = RetryBudget(current.trainer_retries, max_retries)
        return decide(JobStatus(current.status), ended, budget, resume_step, shutting_down)

    async def apply(self, job: JobRow, verdict: Verdict) -> None:
        if isinstance(verdict, Succeed):
            await self._succeed(job, verdict.result)
        elif isinstance(verdict, FailJob):
            await asyncio.to_thread(self.fail, job.id, verdict, {JobStatus.RUNNING})
        elif isinstance(verdict, Requeue):
            await asyncio.to_thread(self._requeue, job.id, verdict)

    def fail(self, job_id: str, failure: FailJob, only_from: set[JobStatus]) -> None:
        error = {"code": failure.code, "message": failure.message, "param": failure.param}
        event = (failure.message, "error")
        self.jobs.transition(job_id, JobStatus.FAILED, only_from, [event], self.owner, error=error)

    def _requeue(self, job_id: str, requeue: Requeue) -> None:
        fields = {}
        if requeue.retry:
            fields["trainer_retries"] = self.jobs.get(None, job_id).trainer_retries + 1
        event = (requeue.message, "warn" if requeue.retry else "info")
        self.jobs.transition(job_id, JobStatus.QUEUED, {JobStatus.RUNNING}, [event], self.owner, **fields)

    def continue_adopted(self, job_id: str, resume_step: int | None, restarted: bool) -> None:
        """A running job this gateway adopted with no trainer to re-attach to: back to the queue, to
        continue from its latest checkpoint. `restarted`: it was this gateway's own before."""
        where = f"from checkpoint-{resume_step}" if resume_step else "from the start"
        message = f"{_adopted_because(restarted)}; the job continues {where}"
        self.jobs.transition(job_id, JobStatus.QUEUED, {JobStatus.RUNNING}, [message], self.owner)

    def reattached(self, job_id: str, restarted: bool) -> None:
        """A running job this gateway adopted whose trainer still runs (on a cluster)."""
        self.jobs.add_event(job_id, f"{_adopted_because(restarted)}; its trainer kept running")

    async def _succeed(self, job: JobRow, result: ResultEvent) -> None:
        name, base = job.model_name, self.fleet.get(job.base_model)
        try:
            # Loaded before the job says `succeeded`, so the model answers as soon as it is listed.
            await base.preload(name, result.adapter_dir)
        except AdapterLoadError as exc:
            # The engine's words may name server paths: they go to the log, not to the job.
            logger.warning("The adapter of %s could not be loaded: %s", job.id, exc)
            failure = FailJob("adapter_load_failed", "The engine could not load the trained adapter.")
            await asyncio.to_thread(self.fail, job.id, failure, {JobStatus.RUNNING, JobStatus.PAUSED})
            return
        except EngineUnreachable:
            # The engine is restarting, which says nothing about the adapter: it loads on first use.
            logger.warning("Engine unavailable when %s finished; its adapter will load on demand", job.id)
        evaluation = None
        if self.evaluator is not None and self.evaluator.applies_to(job):
            # Between the load and `succeeded`, so the job says succeeded with both result files.
            evaluation = await self.evaluator.evaluate(job, result.adapter_dir)
        if not await asyncio.to_thread(self._record_success, job, result, evaluation):
            await base.unload_everywhere(name)

    def _record_success(self, job: JobRow, result: ResultEvent, evaluation: Evaluation | None) -> bool:
        results = self.files.create_from(
            job.organization_id, result.metrics_csv, "step_metrics.csv", "fine-tune-results"
        )
        result_files = [results.id]
        events: list[str | tuple[str, str]] = []
        if evaluation is not None:
            events.append(evaluation.event)
            if evaluation.report_file is not None:
                result_files.append(evaluation.report_file)
        return self.jobs.transition(
            job.id,
            JobStatus.SUCCEEDED,
            {JobStatus.RUNNING, JobStatus.PAUSED},
            [
                *events,
                f"New fine-tuned model created: {job.model_name}",
                "The job has successfully completed",
            ],
            self.owner,
            fine_tuned_model=job.model_name,
            adapter_path=result.adapter_dir,
            trained_tokens=result.trained_tokens,
            result_files=result_files,
        )


def _adopted_because(restarted: bool) -> str:
    return f"The {'server restarted' if restarted else 'gateway supervising it stopped'} during training"
