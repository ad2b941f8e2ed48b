"""The two entries: `validate` a grader before use, `grade` one sample with it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from trainer.graders import model_graders, multi, python_grader, string_check, text_similarity
from trainer.graders.context import GradingContext, ModelCallError
from trainer.graders.models import (
    Grader,
    LabelModelGrader,
    MultiGrader,
    PythonGrader,
    ScoreModelGrader,
    StringCheckGrader,
    SubGrader,
    TextSimilarityGrader,
)
from trainer.graders.results import GraderError, GradeResult, GradingFailure, TokenUsage
from trainer.graders.templates import Sample, check, render

logger = logging.getLogger(__name__)
_GRADER: TypeAdapter[Grader] = TypeAdapter(Grader)


def parse_grader(data: Mapping[str, Any] | Grader, param: str = "grader") -> Grader:
    """A grader from its JSON (GraderError naming the first wrong field)."""
    if not isinstance(data, Mapping):
        return data
    try:
        return _GRADER.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = list(first["loc"])
        if location and location[0] == data.get("type"):  # pydantic's union tag, not a field
            location = location[1:]
        where = ".".join(str(step) for step in (param, *location))
        raise GraderError(f"Invalid value for '{where}': {first['msg']}", where) from None


def validate(grader: Mapping[str, Any] | Grader, context: GradingContext, param: str = "grader") -> Grader:
    """The grader, checked as far as can be without a sample: shape, templates, formula, that its
    model is served and that python graders can be sandboxed here. GraderError otherwise. Blocking
    (a model look-up, the sandbox's first probe): call it from a thread in async code."""
    parsed = parse_grader(grader, param)
    if isinstance(parsed, MultiGrader):
        multi.validate(parsed, lambda sub, where: _validate_one(sub, context, where), param)
    else:
        _validate_one(parsed, context, param)
    return parsed


def _validate_one(grader: SubGrader, context: GradingContext, param: str) -> None:
    if isinstance(grader, StringCheckGrader):
        string_check.validate(grader, param)
    elif isinstance(grader, TextSimilarityGrader):
        check(grader.input, f"{param}.input")
        check(grader.reference, f"{param}.reference")
        has_embeddings = context.embed is not None
        text_similarity.check_metric(grader.evaluation_metric, has_embeddings, f"{param}.evaluation_metric")
    elif isinstance(grader, PythonGrader):
        python_grader.validate(grader, context.sandbox, param)
    else:
        model_graders.validate(grader, context.models, param)


async def grade(grader: Grader, sample: Sample, item: Any, context: GradingContext) -> GradeResult:
    """One sample's reward and metadata. A grader that fails on this sample scores 0 with its error
    flag set (never raises for that); validate the grader first."""
    started = time.perf_counter()
    result = GradeResult(reward=0.0, name=grader.name, type=grader.type)
    try:
        if isinstance(grader, MultiGrader):
            result.reward = await multi.grade(grader, lambda sub: grade(sub, sample, item, context), result)
        else:
            result.reward = await _score(grader, sample, item, context, result)
    except GradingFailure as failure:
        result.reward = 0.0
        result.errors.record(failure)
    except (GraderError, ArithmeticError, ValueError, LookupError, TypeError, RecursionError):
        # A metric library's bug on an odd text, or a grader that skipped `validate`: that sample
        # scores 0 (RFT goes on), the server's log has the details.
        logger.exception("Grader %r failed unexpectedly", grader.name)
        result.reward = 0.0
        result.errors.other_error = True
    result.execution_time = time.perf_counter() - started
    return result


async def _score(
    grader: SubGrader, sample: Sample, item: Any, context: GradingContext, result: GradeResult
) -> float:
    if isinstance(grader, StringCheckGrader):
        return string_check.score(grader, sample, item)
    if isinstance(grader, TextSimilarityGrader):
        text = render(grader.input, sample, item)
        reference = render(grader.reference, sample, item)
        if grader.evaluation_metric == "cosine":
            if context.embed is None:
                raise GradingFailure("other_error", "no embedding model is configured")
            try:
                return text_similarity.cosine(await context.embed([text, reference]))
            except ModelCallError as exc:
                raise GradingFailure("other_error", str(exc)) from None
        metric = grader.evaluation_metric
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            context.executor, text_similarity.similarity, metric, text, reference
        )
    if isinstance(grader, PythonGrader):
        return await python_grader.score(grader, sample, item, context.sandbox)
    assert isinstance(grader, ScoreModelGrader | LabelModelGrader)
    result.sampled_model_name = grader.model
    result.token_usage_per_model[grader.model] = TokenUsage()  # until the model has answered
    reply = await model_graders.ask(grader, sample, item, context.models)
    result.token_usage_per_model[grader.model] = reply.usage  # spent, whether the reply parses or not
    return model_graders.reward(grader, reply)
