"""Rewards for reinforcement fine-tuning: each sampled completion scored by the job's grader.

TRL's GRPOTrainer calls a reward function with a step's prompts, completions and the dataset's
other columns. A row's grader fields are any JSON, varying in shape from row to row, which an Arrow
column cannot hold: the dataset carries only a row number (`row`) and the fields stay here.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainer.data import DataValidationError
from trainer.events import EventWriter
from trainer.gateway_models import GatewayModels
from trainer.graders import (
    EndpointEmbedder,
    ErrorFlags,
    Grader,
    GraderError,
    GradingContext,
    Sample,
    Sandbox,
    SandboxLimits,
    grade,
    validate,
)
from trainer.spec import ReinforcementSettings

GRADER_PARAM = "method.reinforcement.grader"
# A step where at least this share of the samples failed to grade gets the user a warning (once).
FAILING_SHARE = 0.5


def grading_context(settings: ReinforcementSettings, hidden: Sequence[Path]) -> GradingContext:
    """The trainer's grading: python graders in the sandbox, as many at once as there are cores
    (they are subprocesses, mostly idle while the model trains), never seeing the job's files;
    model graders through the gateway's chat completions when the spec gives access to them
    (trainer/gateway_models.py; without it they are refused)."""
    limits = SandboxLimits(
        time_limit_s=settings.python_grader_timeout_s,
        memory_bytes=settings.python_grader_memory_mb * 2**20,
        max_concurrent=min(8, max(2, os.cpu_count() or 2)),
        hidden_paths=tuple(hidden),
    )
    access = settings.model_graders
    embed = EndpointEmbedder(settings.embeddings) if settings.embeddings is not None else None
    return GradingContext(
        models=GatewayModels(access) if access is not None else None, embed=embed, sandbox=Sandbox(limits)
    )


def checked_grader(settings: ReinforcementSettings, context: GradingContext) -> Grader:
    """The job's grader, checked here (a python grader needs this machine's sandbox)."""
    try:
        return validate(settings.grader, context, GRADER_PARAM)
    except GraderError as exc:
        raise DataValidationError("invalid_grader", exc.message, exc.param or GRADER_PARAM) from None


def completion_text(completion: Any) -> str:
    """The text of a completion as TRL passes it: the assistant message(s), or plain text."""
    if isinstance(completion, str):
        return completion
    return "".join(str(message.get("content") or "") for message in completion)


def describe_failure(errors: ErrorFlags) -> str:
    flags = [name for name, value in vars(errors).items() if value is True]
    details = (
        errors.python_grader_runtime_error_details
        or errors.model_grader_server_error_details
        or errors.python_grader_server_error_type
    )
    text = ", ".join(flags) or "error"
    return f"{text}: {details.strip()[-400:]}" if details else text


class GraderReward:
    """The TRL reward function (async: TRL awaits it on its own event loop, so one step's samples
    are graded concurrently, python graders bounded by the sandbox's `max_concurrent`). A sample
    whose grading fails scores 0; failures are counted, and reported once if they keep coming."""

    __name__ = "grader"  # TRL's name for the reward in its logs ("rewards/grader/mean")

    def __init__(
        self, grader: Grader, context: GradingContext, items: list[dict[str, Any]], events: EventWriter
    ) -> None:
        self.grader = grader
        self.context = context
        self.items = items
        self.events = events
        self.graded = 0
        self.failed = 0
        self.warned = False

    async def __call__(self, completions: list[Any], row: list[int], **kwargs: Any) -> list[float]:
        outcomes = await asyncio.gather(
            *(self._grade(completion_text(c), self.items[r]) for c, r in zip(completions, row, strict=True))
        )
        failures = [why for _reward, why in outcomes if why is not None]
        self.graded += len(outcomes)
        self.failed += len(failures)
        if failures and len(failures) >= FAILING_SHARE * len(outcomes) and not self.warned:
            self.warned = True
            state = kwargs.get("trainer_state")
            where = f" at step {state.global_step + 1}" if state is not None else ""
            self.events.message(
                f"The grader failed on {len(failures)} of {len(outcomes)} samples{where} "
                f"({failures[0]}); failed samples score 0",
                level="warn",
            )
        return [reward for reward, _why in outcomes]

    async def _grade(self, text: str, item: dict[str, Any]) -> tuple[float, str | None]:
        try:
            result = await grade(self.grader, Sample.from_text(text), item, self.context)
        except Exception as exc:  # the sandbox itself broke (grade() reports graders' own failures)
            return 0.0, f"{type(exc).__name__}: {exc}"
        if result.errors.any:
            return 0.0, describe_failure(result.errors)
        return result.reward, None

    def summary(self) -> str:
        failed = f"; {self.failed} failed and scored 0" if self.failed else ""
        return f"The grader scored {self.graded} samples{failed}"
