"""A finished job's evaluation report (issue 16): the base and the fine-tuned model answer the
validation file's first prompts through the engine (greedy, the same token budget for both), and
their answers are scored side by side (service/jobs/evaluation.py) into `eval_report.json` and an
event. service/jobs/outcomes.py runs it once the adapter is loaded and before the job succeeds.

Bounded: at most `eval_max_prompts` prompts, `CONCURRENCY` requests at a time, and everything given
up after `eval_timeout_s`. Whatever goes wrong (the engine, the file, the grader, the deadline)
gives a warning event instead of a report, never a failed job.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from service.config import Settings
from service.engine.direct_chat import Adapter, EngineTrouble, chat_text
from service.engine.fleet import EngineFleet
from service.engine.limits import ChatLimits
from service.errors import AdapterLoadError, EngineUnreachable, ServiceError
from service.files import FileStore
from service.jobs.eval_grader import GRADING_CONCURRENCY, evaluation_grader, graded
from service.jobs.evaluation import (
    REPORT_FILENAME,
    EvalPrompt,
    Side,
    build_report,
    max_tokens_for,
    read_prompts,
    summary,
)
from service.jobs.progress import BASE_VALID_LOSS
from service.jobs.store import JobStore
from service.jobs.training_options import parse_training_options
from service.protocol.evaluation import EvaluationReport
from service.store import JobRow
from trainer import storage
from trainer.data import DataValidationError
from trainer.graders import Grader, GraderError, GradingContext
from trainer.spec import ReinforcementSettings

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Requests in flight at once (both models together): enough to batch well in vLLM, few enough to
# leave room for the users' requests on the same engine.
CONCURRENCY = 16


@dataclass(frozen=True)
class Evaluation:
    """What the job's end records: an event (message, level) and the report's file, if any."""

    event: tuple[str, str]
    report_file: str | None = None


class Skipped(Exception):
    """The evaluation cannot be made; `reason` is shown to the user (no server paths)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JobEvaluator:
    def __init__(
        self,
        settings: Settings,
        jobs: JobStore,
        files: FileStore,
        fleet: EngineFleet,
        limits: ChatLimits,
        grading: Callable[[str], GradingContext],
    ) -> None:
        """`grading`: an organization's grading context (service/graders.py's GraderService.context)."""
        self.max_prompts = settings.eval_max_prompts
        self.max_tokens = settings.eval_max_tokens
        self.timeout_s = settings.eval_timeout_s
        self.max_lora_rank = settings.engine_max_lora_rank
        self.jobs, self.files, self.fleet, self.limits, self.grading = jobs, files, fleet, limits, grading

    def applies_to(self, job: JobRow) -> bool:
        return job.validation_file is not None and self.max_prompts > 0

    async def evaluate(self, job: JobRow, adapter_location: str) -> Evaluation:
        """The job's evaluation; never raises (but for cancellation)."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_s):
                report = await self._report(job, adapter_location, started)
            stored = await asyncio.to_thread(self._store, job, report)
        except TimeoutError:
            return _skipped(f"it did not finish within {self.timeout_s:g} s")
        except Skipped as exc:
            return _skipped(exc.reason)
        except EngineUnreachable:
            return _skipped("the engine could not be reached")
        except AdapterLoadError:
            return _skipped("the engine could not load the adapter")
        except EngineTrouble as exc:
            return _skipped(str(exc))
        except Exception:
            logger.exception("The evaluation of %s failed", job.id)
            return _skipped("an internal error (the server's log has details)")
        logger.info("Evaluated %s in %.2f s", job.id, time.monotonic() - started)
        return Evaluation((summary(report), "info"), stored)

    async def _report(self, job: JobRow, adapter_location: str, started: float) -> EvaluationReport:
        prompts = await asyncio.to_thread(self._prompts, job)
        if not prompts:
            raise Skipped("the validation file has no prompt with a text answer to compare")
        grader, context = await asyncio.to_thread(self._grader, job)
        cap = self._answer_cap(job)
        served = self.fleet.get(job.base_model)
        adapter = Adapter(job.model_name, adapter_location)
        gate = asyncio.Semaphore(CONCURRENCY)
        salt = self.limits.cache_salt(job.organization_id)  # the organization's own prefix cache

        async def answer(prompt: EvalPrompt, model: str, with_adapter: Adapter | None) -> str | None:
            body: dict[str, Any] = {
                "model": model,
                "messages": prompt.messages,
                "temperature": 0,
                "max_tokens": max_tokens_for(prompt, cap),
                "cache_salt": salt,
            }
            async with gate:
                return await chat_text(served, body, with_adapter)

        base_answers = [answer(p, job.base_model, None) for p in prompts]
        tuned_answers = [answer(p, job.model_name, adapter) for p in prompts]
        answers = await _all([*base_answers, *tuned_answers])
        pairs = list(zip(answers[: len(prompts)], answers[len(prompts) :], strict=True))
        kept = [
            (p, b, t) for p, (b, t) in zip(prompts, pairs, strict=True) if b is not None and t is not None
        ]
        if not kept:
            raise Skipped("the engine refused every prompt")
        asked = [p for p, _, _ in kept]
        base = [b for _, b, _ in kept if b is not None]
        tuned = [t for _, _, t in kept if t is not None]
        base_rewards = tuned_rewards = None
        grader_errors = 0
        if grader is not None and context is not None:
            grading = asyncio.Semaphore(GRADING_CONCURRENCY)
            (base_rewards, base_failed), (tuned_rewards, tuned_failed) = await asyncio.gather(
                graded(grader, context, asked, base, grading),
                graded(grader, context, asked, tuned, grading),
            )
            grader_errors = base_failed + tuned_failed
        base_loss, tuned_loss = await asyncio.to_thread(self._losses, job)
        return build_report(
            asked,
            Side(job.base_model, base_loss, base, base_rewards),
            Side(job.model_name, tuned_loss, tuned, tuned_rewards),
            n_skipped=len(prompts) - len(kept),
            max_tokens=cap,
            grader=grader.name if grader is not None else None,
            grader_errors=grader_errors,
            elapsed_s=time.monotonic() - started,
        )

    def _answer_cap(self, job: JobRow) -> int:
        """The most tokens an answer may take: a reinforcement job's answers are as long as those it
        was trained on (a base model rambling longer would be graded on more than the job was)."""
        if job.method_type != "reinforcement":
            return self.max_tokens
        trained = parse_training_options(job.job_metadata, self.max_lora_rank).max_completion_tokens
        default = ReinforcementSettings.model_fields["max_completion_tokens"].default
        return min(self.max_tokens, trained or default)

    # -- blocking parts, run in worker threads ---------------------------------------------------

    def _prompts(self, job: JobRow) -> list[EvalPrompt]:
        file_id = job.validation_file
        if file_id is None or not self.files.usable(job.organization_id, file_id):
            raise Skipped("the validation file is gone")
        try:
            with storage.local_copy(self.files.location_of(file_id)) as path:
                return read_prompts(path, job.method_type, self.max_prompts)
        except DataValidationError as exc:
            raise Skipped(f"the validation file cannot be read any more ({exc.code})") from None

    def _grader(self, job: JobRow) -> tuple[Grader | None, GradingContext | None]:
        context = self.grading(job.organization_id)
        try:
            grader = evaluation_grader(job, context)
        except (GraderError, ServiceError) as exc:
            raise Skipped(f"its grader cannot be used any more: {getattr(exc, 'message', exc)}") from None
        return grader, context

    def _losses(self, job: JobRow) -> tuple[float | None, float | None]:
        """The base's and the fine-tuned model's validation loss, as the trainer measured them (the
        base's before the first step, the fine-tuned one's at the last); none for reinforcement."""
        if job.method_type == "reinforcement":
            return None, None
        base = self.jobs.latest_event_value(job.id, BASE_VALID_LOSS, "message")
        tuned = self.jobs.latest_event_value(job.id, "valid_loss", "metrics")
        return _number(base), _number(tuned)

    def _store(self, job: JobRow, report: EvaluationReport) -> str:
        data = io.BytesIO(report.model_dump_json(indent=2).encode())
        stored = self.files.create(
            job.organization_id, data, REPORT_FILENAME, "fine-tune-results", internal=True
        )
        return stored.id


async def _all(work: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    """`asyncio.gather`, but when one fails the others are cancelled (not left asking the engine)."""
    tasks = [asyncio.ensure_future(each) for each in work]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _skipped(reason: str) -> Evaluation:
    return Evaluation((f"Evaluation skipped: {reason}. The fine-tuned model is not affected.", "warn"))
