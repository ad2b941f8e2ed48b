"""The grader of a job's evaluation report (service/jobs/evaluator.py), and the answers it scores:
the one named in `metadata["opentune.eval_grader"]` (OpenAI's grader JSON), else a reinforcement
job's own.

    metadata={"opentune.eval_grader": '{"type": "string_check", "name": "same", "operation": "eq",
              "input": "{{sample.output_text}}", "reference": "{{item.reference_answer}}"}'}

Checked when the job is created (a 400 naming the key), with the grading the gateway runs it with:
python graders in its sandbox, model graders through the organization's models (service/graders.py).
`{{item.reference_answer}}` is the row's reference answer; a reinforcement row's fields are its item.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from service.errors import InvalidRequest
from service.jobs.evaluation import EvalPrompt
from service.store import JobRow
from trainer.graders import Grader, GraderError, GradingContext, Sample, grade, validate

logger = logging.getLogger(__name__)
EVAL_GRADER_KEY = "opentune.eval_grader"
PARAM = f"metadata.{EVAL_GRADER_KEY}"
# Answers graded at once: model graders' calls take places in the organization's chat concurrency
# limit (8 by default, service/graders.py), so they leave some to its own requests.
GRADING_CONCURRENCY = 4


def eval_grader_of(metadata: Mapping[str, str] | None) -> dict[str, Any] | None:
    """The metadata's grader JSON as an object, unchecked; None when there is none."""
    raw = (metadata or {}).get(EVAL_GRADER_KEY)
    if raw is None:
        return None
    try:
        grader = json.loads(raw)
    except ValueError:
        raise InvalidRequest(f"metadata '{EVAL_GRADER_KEY}' must be a grader as JSON.", param=PARAM) from None
    if not isinstance(grader, dict):
        raise InvalidRequest(f"metadata '{EVAL_GRADER_KEY}' must be a JSON object (a grader).", param=PARAM)
    return grader


def check_eval_grader(metadata: Mapping[str, str] | None, context: GradingContext) -> None:
    """A 400 naming the field when the metadata's grader cannot be used. Blocking (a model look-up,
    the sandbox's probe): call from a worker thread."""
    grader = eval_grader_of(metadata)
    if grader is None:
        return
    try:
        validate(grader, context, param=PARAM)
    except GraderError as exc:
        raise InvalidRequest(exc.message, param=exc.param or PARAM, code=exc.code) from None


def evaluation_grader(job: JobRow, context: GradingContext) -> Grader | None:
    """The job's evaluation grader, checked again (GraderError, InvalidRequest: no longer usable,
    e.g. the model a model grader calls was deleted); None when the job has none. Blocking."""
    grader = eval_grader_of(job.job_metadata) or (job.method_options or {}).get("grader")
    if grader is None:
        return None
    return validate(grader, context, param=PARAM)


async def graded(
    grader: Grader,
    context: GradingContext,
    prompts: Sequence[EvalPrompt],
    answers: Sequence[str],
    gate: asyncio.Semaphore,
) -> tuple[list[float], int]:
    """Each answer's reward, and how many the grader failed on (scored 0, as in training)."""
    outcomes = await asyncio.gather(
        *(_reward(grader, context, p, a, gate) for p, a in zip(prompts, answers, strict=True))
    )
    return [reward for reward, _ in outcomes], sum(failed for _, failed in outcomes)


async def _reward(
    grader: Grader, context: GradingContext, prompt: EvalPrompt, answer: str, gate: asyncio.Semaphore
) -> tuple[float, bool]:
    async with gate:
        try:
            result = await grade(grader, Sample.from_text(answer), prompt.item, context)
        except Exception:  # the sandbox itself broke (grade() scores a grader's own failures 0)
            logger.warning("Grading an evaluation answer failed", exc_info=True)
            return 0.0, True
    return result.reward, result.errors.any
