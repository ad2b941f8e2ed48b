"""`eval_report.json`: the second result file of a job with a validation file (an opentune
extension; service/jobs/evaluator.py writes it). Downloaded with `client.files.content(id)`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class ModelScores(BaseModel):
    """One model's side of the report; None where the figure does not apply to the job."""

    model_config = ConfigDict(protected_namespaces=())

    model: str
    # The validation file's loss (the trainer's: the base's before the first step, the fine-tuned
    # model's at the last one); None for reinforcement jobs, where it means nothing.
    valid_loss: float | None
    # Share of prompts whose greedy answer equals the reference (both stripped of outer whitespace);
    # None when the rows have no reference (reinforcement).
    exact_match: float | None
    grader_mean: float | None  # mean reward of the answers under the job's grader, if it has one


class EvaluationExample(BaseModel):
    messages: list[dict[str, Any]]  # the prompt
    reference: str | None
    base: str
    fine_tuned: str


class EvaluationReport(BaseModel):
    n_prompts: int  # prompts both models answered
    n_skipped: int  # prompts the engine refused (too long for it, say), in neither figure
    max_tokens: int  # the most tokens either model could answer a prompt with
    grader: str | None  # the grader's name, when the figures include its mean
    grader_errors: int  # answers (of either model) the grader failed on, each scored 0
    base: ModelScores
    fine_tuned: ModelScores
    examples: list[EvaluationExample]  # the first prompts, with both answers
    elapsed_s: float  # how long the evaluation took
