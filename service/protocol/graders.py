"""Graders' endpoints as OpenAI's SDK has them (`openai/types/fine_tuning/alpha/grader_*.py`):
`client.fine_tuning.alpha.graders.run(grader=..., model_sample=..., item=...)` and `.validate`.
The grader shapes themselves live with the grading library (trainer/graders/models.py)."""

from typing import Any

from pydantic import BaseModel, ConfigDict

from trainer.graders.models import Grader


class GraderRunRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    grader: Grader
    model_sample: str  # the `sample` namespace: output_text, and output_json when it is JSON
    item: Any = None  # the `item` namespace: the dataset row, any JSON


class GraderValidateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    grader: Grader


class GraderValidateResponse(BaseModel):
    grader: Grader


class GraderRunErrors(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    formula_parse_error: bool
    invalid_variable_error: bool
    model_grader_parse_error: bool
    model_grader_refusal_error: bool
    model_grader_server_error: bool
    model_grader_server_error_details: str | None = None
    other_error: bool
    python_grader_runtime_error: bool
    python_grader_runtime_error_details: str | None = None
    python_grader_server_error: bool
    python_grader_server_error_type: str | None = None
    sample_parse_error: bool
    truncated_observation_error: bool
    unresponsive_reward_error: bool


class GraderRunMetadata(BaseModel):
    errors: GraderRunErrors
    execution_time: float
    name: str
    sampled_model_name: str | None = None
    scores: dict[str, Any]
    token_usage: int | None = None
    type: str


class ModelTokenUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int


class GraderRunResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    reward: float
    metadata: GraderRunMetadata
    sub_rewards: dict[str, Any]
    model_grader_token_usage_per_model: dict[str, ModelTokenUsage]
