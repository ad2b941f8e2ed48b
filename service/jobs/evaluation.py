"""A job's evaluation report (issue 16), the pure parts: what the base and the fine-tuned model are
asked (the validation file's prompts), what their answers score, and the report and event that say
so. service/jobs/evaluator.py runs the prompts through the engine.

A row's reference answer is what the job trained toward: a chat row's last assistant message, a
preference row's preferred output. Reinforcement rows have none (their grader scores the answers).
Rows whose answer depends on tools (the row lists tools, or its answer is a tool call) are left out:
the answers are compared as text.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.protocol.evaluation import EvaluationExample, EvaluationReport, ModelScores
from trainer.data import ChatExample, Example, PreferenceExample, iter_examples

REPORT_FILENAME = "eval_report.json"
EXAMPLES_SHOWN = 5
# Tokens an answer may take beyond its reference's UTF-8 length: a tokenizer spends at most one
# token per byte (byte-level BPE; SentencePiece's byte fallback), so an answer cut there could not
# have matched anyway; the margin covers a leading space token or two.
REFERENCE_MARGIN_TOKENS = 8


@dataclass(frozen=True)
class EvalPrompt:
    messages: list[dict[str, Any]]
    reference: str | None  # the row's answer; None for reinforcement rows
    item: dict[str, Any]  # a grader's `{{item.*}}`: the row's fields, or `reference_answer`


@dataclass(frozen=True)
class Side:
    """One model's part: its name, validation loss and, per prompt kept, answer and grader reward."""

    model: str
    valid_loss: float | None
    answers: list[str]
    rewards: list[float] | None = None  # None: no grader


def prompt_of(example: Example) -> EvalPrompt | None:
    """The prompt and reference of one validation row; None for a row left out (see above)."""
    if isinstance(example, ChatExample):
        if example.tools:
            return None
        last = max(i for i, m in enumerate(example.messages) if m["role"] == "assistant")
        answer = example.messages[last]
        reference = answer.get("content")
        if (
            last == 0
            or not isinstance(reference, str)
            or answer.get("tool_calls")
            or answer.get("function_call")
        ):
            return None
        return EvalPrompt(_cleaned(example.messages[:last]), reference, {"reference_answer": reference})
    if isinstance(example, PreferenceExample):
        if example.tools:
            return None
        reference = example.preferred["content"]  # text, as the file check required
        return EvalPrompt(_cleaned(example.messages), reference, {"reference_answer": reference})
    return EvalPrompt(_cleaned(example.messages), None, dict(example.item))


def _cleaned(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # A loss `weight` is the trainer's business, not part of a chat request.
    return [{k: v for k, v in m.items() if k != "weight"} for m in messages]


def read_prompts(path: Path, method: str, limit: int) -> list[EvalPrompt]:
    """The first `limit` usable prompts of a validation file (DataValidationError for a bad row: the
    file was checked when the job was created, so only a changed file has one)."""
    prompts: list[EvalPrompt] = []
    if limit <= 0:
        return prompts
    for example, _size in iter_examples(path, method, "validation_file"):
        prompt = prompt_of(example)
        if prompt is not None:
            prompts.append(prompt)
            if len(prompts) >= limit:
                break
    return prompts


def max_tokens_for(prompt: EvalPrompt, cap: int) -> int:
    """The answer's token budget, the same for both models: bounded by the reference's length when
    there is one (exact match needs no more, and a rambling base model costs no more time)."""
    if prompt.reference is None:
        return cap
    return min(cap, len(prompt.reference.encode()) + REFERENCE_MARGIN_TOKENS)


def exact_match(answer: str, reference: str) -> bool:
    return answer.strip() == reference.strip()


def scores(side: Side, prompts: Sequence[EvalPrompt]) -> ModelScores:
    references = [p.reference for p in prompts]
    exact: float | None = None
    if prompts and all(r is not None for r in references):
        hits = [exact_match(a, r) for a, r in zip(side.answers, references, strict=True) if r is not None]
        exact = sum(hits) / len(hits)
    grader_mean = statistics.fmean(side.rewards) if side.rewards else None
    return ModelScores(
        model=side.model, valid_loss=side.valid_loss, exact_match=exact, grader_mean=grader_mean
    )


def build_report(
    prompts: Sequence[EvalPrompt],
    base: Side,
    fine_tuned: Side,
    *,
    n_skipped: int,
    max_tokens: int,
    grader: str | None,
    elapsed_s: float,
    grader_errors: int = 0,
) -> EvaluationReport:
    """The report on `prompts` (those both models answered), `base` and `fine_tuned` in their order."""
    examples = [
        EvaluationExample(messages=p.messages, reference=p.reference, base=b, fine_tuned=t)
        for p, b, t in zip(prompts, base.answers, fine_tuned.answers, strict=True)
    ][:EXAMPLES_SHOWN]
    return EvaluationReport(
        n_prompts=len(prompts),
        n_skipped=n_skipped,
        max_tokens=max_tokens,
        grader=grader,
        grader_errors=grader_errors,
        base=scores(base, prompts),
        fine_tuned=scores(fine_tuned, prompts),
        examples=examples,
        elapsed_s=round(elapsed_s, 3),
    )


def summary(report: EvaluationReport) -> str:
    """The job event: "Evaluation: base exact match 0.10, validation loss 2.3100 vs fine-tuned ..."."""
    return (
        f"Evaluation: base {_figures(report.base)} vs fine-tuned {_figures(report.fine_tuned)} "
        f"({report.n_prompts} validation prompts; details in {REPORT_FILENAME})"
    )


def _figures(scores: ModelScores) -> str:
    parts = []
    if scores.exact_match is not None:
        parts.append(f"exact match {scores.exact_match:.2f}")
    if scores.valid_loss is not None:
        parts.append(f"validation loss {scores.valid_loss:.4f}")
    if scores.grader_mean is not None:
        parts.append(f"grader mean {scores.grader_mean:.3f}")
    return ", ".join(parts) or "no figures"
