"""What grading one sample gives: a reward and OpenAI's metadata (`grader_run_response.py`), and
the two ways grading goes wrong.

- `GraderError`: the grader itself is invalid (a 400 at the API, naming `param`); found by
  `validate` before anything runs.
- `GradingFailure`: a valid grader failed on this sample (a missing variable, a model reply that
  does not parse, a python grader that raised): reward 0 and the matching error flag, as OpenAI
  answers (200, not an error status).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ErrorFlag = Literal[
    "formula_parse_error",
    "invalid_variable_error",
    "model_grader_parse_error",
    "model_grader_refusal_error",
    "model_grader_server_error",
    "other_error",
    "python_grader_runtime_error",
    "python_grader_server_error",
    "sample_parse_error",
    "truncated_observation_error",
    "unresponsive_reward_error",
]


class GraderError(ValueError):
    """An invalid grader: `message` says what is wrong, `param` where (e.g. `grader.graders.a.source`),
    `code` OpenAI's error code where one fits (`model_not_found`)."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class GradingFailure(Exception):
    """A grader that failed on this sample: it scores 0 with `flag` set, and `details` where the
    metadata has a field for them (python graders' runtime errors, model graders' server errors)."""

    def __init__(self, flag: ErrorFlag, details: str | None = None, *, error_type: str | None = None) -> None:
        super().__init__(details or flag)
        self.flag = flag
        self.details = details
        self.error_type = error_type


@dataclass
class ErrorFlags:
    """metadata.errors, every flag present (the SDK's type requires them all)."""

    formula_parse_error: bool = False
    invalid_variable_error: bool = False
    model_grader_parse_error: bool = False
    model_grader_refusal_error: bool = False
    model_grader_server_error: bool = False
    model_grader_server_error_details: str | None = None
    other_error: bool = False
    python_grader_runtime_error: bool = False
    python_grader_runtime_error_details: str | None = None
    python_grader_server_error: bool = False
    python_grader_server_error_type: str | None = None
    sample_parse_error: bool = False
    truncated_observation_error: bool = False
    unresponsive_reward_error: bool = False

    def record(self, failure: GradingFailure) -> None:
        setattr(self, failure.flag, True)
        if failure.flag == "python_grader_runtime_error":
            self.python_grader_runtime_error_details = failure.details
        elif failure.flag == "python_grader_server_error":
            self.python_grader_server_error_type = failure.error_type or "sandbox_error"
        elif failure.flag == "model_grader_server_error":
            self.model_grader_server_error_details = failure.details

    def merge(self, other: ErrorFlags) -> None:
        """Set every flag `other` has (a multi grader reports its sub-graders' errors)."""
        for name, value in vars(other).items():
            if value and not getattr(self, name):
                setattr(self, name, value)

    @property
    def any(self) -> bool:
        return any(value is True for value in vars(self).values())


@dataclass(frozen=True)
class TokenUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
        )


@dataclass
class GradeResult:
    """One grader's verdict on one sample."""

    reward: float
    name: str
    type: str
    errors: ErrorFlags = field(default_factory=ErrorFlags)
    execution_time: float = 0.0
    sub_rewards: dict[str, float] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    sampled_model_name: str | None = None
    token_usage_per_model: dict[str, TokenUsage] = field(default_factory=dict)

    @property
    def token_usage(self) -> int | None:
        """Tokens the model graders used, None when no model was called (as OpenAI reports)."""
        if not self.token_usage_per_model:
            return None
        return sum(usage.total_tokens for usage in self.token_usage_per_model.values())
