"""`multi`: named sub-graders, combined by `calculate_output` (trainer/graders/formula.py).

Sub-graders run concurrently. One that fails on the sample counts 0 in the formula and its error
flags show in the result's metadata; the formula's value is the reward (not clamped, as RFT rewards
need not lie in [0, 1]). Multi graders do not nest (the SDK's types do not allow it either).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from trainer.graders.formula import Formula
from trainer.graders.models import MultiGrader, SubGrader
from trainer.graders.results import GraderError, GradeResult, GradingFailure

MAX_GRADERS = 20

Validate = Callable[[SubGrader, str], None]
GradeOne = Callable[[SubGrader], Awaitable[GradeResult]]


def validate(grader: MultiGrader, validate_one: Validate, param: str) -> Formula:
    if len(grader.graders) > MAX_GRADERS:
        raise GraderError(f"A multi grader has at most {MAX_GRADERS} graders.", f"{param}.graders")
    for key, sub in grader.graders.items():
        validate_one(sub, f"{param}.graders.{key}")
    try:
        return Formula(grader.calculate_output, set(grader.graders))
    except GraderError as exc:
        raise GraderError(exc.message, f"{param}.calculate_output") from None


async def grade(grader: MultiGrader, grade_one: GradeOne, result: GradeResult) -> float:
    """The formula over the sub-graders' rewards; fills `result`'s sub-rewards, errors and usage."""
    try:
        formula = Formula(grader.calculate_output, set(grader.graders))
    except GraderError as exc:
        raise GradingFailure("formula_parse_error", exc.message) from None
    keys = list(grader.graders)
    results = await asyncio.gather(*(grade_one(grader.graders[key]) for key in keys))
    for key, sub in zip(keys, results, strict=True):
        result.sub_rewards[key] = sub.reward
        result.errors.merge(sub.errors)
        for model, usage in sub.token_usage_per_model.items():
            known = result.token_usage_per_model.get(model)
            result.token_usage_per_model[model] = usage if known is None else known + usage
        result.sampled_model_name = result.sampled_model_name or sub.sampled_model_name
    result.scores = dict(result.sub_rewards)
    return formula.evaluate(result.sub_rewards)
