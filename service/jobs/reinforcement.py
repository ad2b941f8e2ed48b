"""Reinforcement fine-tuning on the gateway's side: a job's `method.reinforcement` checked (its
grader by the graders library, trainer/graders/), what the job row keeps of it, and the trainer's
settings (trainer/spec.py's ReinforcementSettings; the training itself is trainer/rft.py).

Model graders (score_model, label_model) may name any model the organization can use (checked
here, at creation); the trainer calls it through this server's chat completions with a grader
token (service/jobs/grader_access.py, service/grader_tokens.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from service.errors import InvalidRequest
from service.jobs.hyperparameters import SAMPLES_PER_PROMPT, ResolvedHyperparameters
from service.jobs.training_options import TrainingOptions
from service.protocol.fine_tuning import ReinforcementMethod
from trainer.graders import GraderError, GradingContext, validate
from trainer.spec import ReinforcementSettings

GRADER_PARAM = "method.reinforcement.grader"
MODEL_GRADERS = frozenset({"score_model", "label_model"})
MAX_GRADER_BYTES = 64 * 1024


def check_method(method: ReinforcementMethod, context: GradingContext) -> dict[str, Any]:
    """The job row's `method_options` (grader and response_format, as sent); a 400 naming the field
    when the grader cannot be used (`model_not_found` for a model grader's model the organization
    cannot use: `context` is the organization's). Blocking (the sandbox's probe, the model's
    look-up): call from a worker thread."""
    if len(json.dumps(method.grader)) > MAX_GRADER_BYTES:  # it travels on a command line (file check)
        raise InvalidRequest(f"The grader is larger than {MAX_GRADER_BYTES} bytes.", param=GRADER_PARAM)
    try:
        validate(method.grader, context, param=GRADER_PARAM)
    except GraderError as exc:
        raise InvalidRequest(exc.message, param=exc.param or GRADER_PARAM, code=exc.code) from None
    options: dict[str, Any] = {"grader": method.grader}
    if method.response_format is not None:
        options["response_format"] = _checked_response_format(method.response_format)
    return options


def _checked_response_format(response_format: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's shapes only: the trainer constrains its sampled answers with it (a JSON schema's
    own mistakes are found when the trainer compiles it: the job fails with the reason)."""
    kind = response_format.get("type")
    schema = response_format.get("json_schema")
    if kind not in ("text", "json_object", "json_schema") or (
        kind == "json_schema" and not (isinstance(schema, dict) and isinstance(schema.get("schema"), dict))
    ):
        raise InvalidRequest(
            'response_format must be {"type": "text"}, {"type": "json_object"} or '
            '{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}.',
            param="method.reinforcement.response_format",
        )
    return response_format


def settings_for(
    options: Mapping[str, Any], resolved: ResolvedHyperparameters, training: TrainingOptions
) -> ReinforcementSettings:
    """The trainer's settings; sampling options from the job's metadata (training_options.py)."""
    sampling = {"max_completion_tokens": training.max_completion_tokens, "temperature": training.temperature}
    return ReinforcementSettings(
        grader=dict(options["grader"]),
        num_generations=resolved.samples_per_prompt or SAMPLES_PER_PROMPT,
        eval_interval=resolved.eval_interval,
        eval_samples=resolved.eval_samples or 1,
        response_format=options.get("response_format"),
        **{key: value for key, value in sampling.items() if value is not None},
    )


def uses_model_graders(grader: Mapping[str, Any]) -> bool:
    """Whether the grader, or one of a multi grader's, calls a model."""
    return bool(_types_in(grader) & MODEL_GRADERS)


def uses_embeddings(grader: Mapping[str, Any]) -> bool:
    """Whether the grader, or one of a multi grader's, is text_similarity's cosine."""
    return any(
        sub.get("type") == "text_similarity" and sub.get("evaluation_metric") == "cosine"
        for sub in _graders_in(grader)
    )


def _types_in(grader: Mapping[str, Any]) -> set[str]:
    return {str(sub.get("type")) for sub in _graders_in(grader)}


def _graders_in(grader: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The grader and those of a multi grader (an object of named graders), at any depth."""
    found = [grader]
    subs = grader.get("graders")
    if isinstance(subs, Mapping):
        for sub in subs.values():
            if isinstance(sub, Mapping):
                found += _graders_in(sub)
    return found
