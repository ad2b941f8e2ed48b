"""Fine-tuning jobs and their events, as in OpenAI's `FineTuningJob` / `CreateFineTuningJobRequest`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Auto = Literal["auto"]
# "paused" is in OpenAI's pause example but not its enum; the SDK passes it through (not in strict mode).
JobStatusLiteral = Literal[
    "validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled"
]


class Hyperparameters(BaseModel):
    """Supervised hyperparameters; each is "auto" until the job starts running, then a number."""

    n_epochs: Auto | int = Field(default="auto", description="1..50")
    batch_size: Auto | int = Field(default="auto", description="1..256")
    learning_rate_multiplier: Auto | float = Field(
        default="auto", description="> 0; the learning rate is this times 2e-4 (the usual LoRA start)."
    )

    # Checked before pydantic's own parsing, one clear error per field that names it (a failed
    # "auto" | number union would report two errors with odd locations), and NaN or Infinity
    # (which JSON parsing accepts) refused.
    @field_validator("n_epochs", mode="before")
    @classmethod
    def _check_n_epochs(cls, value: Any) -> Any:
        return _auto_or_number(value, lambda v: v.is_integer() and 1 <= v <= 50, "an integer from 1 to 50")

    @field_validator("batch_size", mode="before")
    @classmethod
    def _check_batch_size(cls, value: Any) -> Any:
        return _auto_or_number(value, lambda v: v.is_integer() and 1 <= v <= 256, "an integer from 1 to 256")

    @field_validator("learning_rate_multiplier", mode="before")
    @classmethod
    def _check_learning_rate_multiplier(cls, value: Any) -> Any:
        return _auto_or_number(value, lambda v: v > 0, "a finite number greater than 0")


def _auto_or_number(value: Any, in_range: Callable[[float], bool], expected: str) -> Any:
    if value == "auto":
        return value
    number_type = isinstance(value, int | float) and not isinstance(value, bool)
    if not (number_type and math.isfinite(value) and in_range(float(value))):
        raise ValueError(f"must be 'auto' or {expected}, got {value!r}")
    return value


class SupervisedMethod(BaseModel):
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)


class DpoHyperparameters(Hyperparameters):
    beta: Auto | float = Field(default="auto", description="0 < beta <= 2, as OpenAI")

    @field_validator("beta", mode="before")
    @classmethod
    def _check_beta(cls, value: Any) -> Any:
        return _auto_or_number(value, lambda v: 0 < v <= 2, "a number greater than 0 and at most 2")


class DpoMethod(BaseModel):
    hyperparameters: DpoHyperparameters = Field(default_factory=DpoHyperparameters)


class ReinforcementHyperparameters(Hyperparameters):
    eval_interval: Auto | int = Field(default="auto", description="training steps between evaluations")
    eval_samples: Auto | int = Field(default="auto", description="samples per validation prompt")
    compute_multiplier: Auto | float = Field(
        default="auto", description="(0.00001, 10]: scales the samples drawn per prompt (4 at 1.0)"
    )
    reasoning_effort: Literal["default", "low", "medium", "high"] = "default"

    @field_validator("eval_interval", "eval_samples", mode="before")
    @classmethod
    def _check_counts(cls, value: Any) -> Any:
        return _auto_or_number(value, lambda v: v.is_integer() and 1 <= v <= 10_000, "an integer from 1")

    @field_validator("compute_multiplier", mode="before")
    @classmethod
    def _check_compute_multiplier(cls, value: Any) -> Any:
        return _auto_or_number(value, lambda v: 1e-5 < v <= 10, "a number greater than 0.00001, at most 10")


class ReinforcementMethod(BaseModel):
    # The grader is checked by trainer/graders (service/jobs/reinforcement.py): its union of types
    # is the graders library's, kept as JSON here so that the job echoes exactly what was sent.
    grader: dict[str, Any]
    hyperparameters: ReinforcementHyperparameters = Field(default_factory=ReinforcementHyperparameters)
    response_format: dict[str, Any] | None = Field(default=None, exclude_if=lambda value: value is None)


def _is_none(value: object) -> bool:
    return value is None


class Method(BaseModel):
    # Only the configuration of the chosen type is sent (OpenAI's schema types them as objects).
    type: Literal["supervised", "dpo", "reinforcement"]
    supervised: SupervisedMethod | None = Field(default=None, exclude_if=_is_none)
    dpo: DpoMethod | None = Field(default=None, exclude_if=_is_none)
    reinforcement: ReinforcementMethod | None = Field(default=None, exclude_if=_is_none)


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


class CreateFineTuningJobRequest(BaseModel):
    # Unknown keys (extra_body) are ignored rather than refused, as OpenAI does.
    model_config = ConfigDict(extra="ignore")

    model: str
    training_file: str
    validation_file: str | None = None
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    suffix: str | None = Field(default=None, min_length=1, max_length=64)
    seed: int | None = Field(default=None, ge=0, le=2147483647)
    metadata: dict[str, str] | None = None
    integrations: list[dict[str, Any]] | None = None


class FineTuningJob(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: JobError | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    hyperparameters: Hyperparameters
    model: str
    organization_id: str
    result_files: list[str] = Field(default_factory=list)
    seed: int
    status: JobStatusLiteral
    trained_tokens: int | None = None
    training_file: str
    validation_file: str | None = None
    estimated_finish: int | None = None
    integrations: list[dict[str, Any]] = Field(default_factory=list)
    metadata: dict[str, str] | None = None
    method: Method
    # Not in OpenAI's spec, but in its real responses.
    user_provided_suffix: str | None = None


class FineTuningJobEvent(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    type: Literal["message", "metrics"] = "message"
    data: dict[str, Any] | None = None


class CheckpointMetrics(BaseModel):
    """Every key optional, and sent only when known (the schema types them as numbers)."""

    step: float | None = Field(default=None, exclude_if=_is_none)
    train_loss: float | None = Field(default=None, exclude_if=_is_none)
    train_mean_token_accuracy: float | None = Field(default=None, exclude_if=_is_none)
    valid_loss: float | None = Field(default=None, exclude_if=_is_none)
    valid_mean_token_accuracy: float | None = Field(default=None, exclude_if=_is_none)
    full_valid_loss: float | None = Field(default=None, exclude_if=_is_none)
    full_valid_mean_token_accuracy: float | None = Field(default=None, exclude_if=_is_none)
    # Reinforcement jobs: the grader's mean reward (trainer/rft.py).
    train_reward_mean: float | None = Field(default=None, exclude_if=_is_none)
    valid_reward_mean: float | None = Field(default=None, exclude_if=_is_none)


class FineTuningJobCheckpoint(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: CheckpointMetrics
    step_number: int
