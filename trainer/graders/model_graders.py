"""`score_model` and `label_model`: a served model reads the templated messages and answers.

The model is asked for JSON through structured output (`response_format` json_schema), as OpenAI
asks its grader models: `{"result": number}` for a score, `{"result": one of the labels}` for a
label, so a model that follows the schema always gives a reply that parses. A reply that is not
such JSON is still read when it is the bare number (or label) alone; anything else is
`model_grader_parse_error`. A score outside `range` (default [0, 1]) is clamped into it, and is the
reward as it is (not rescaled to [0, 1]); a label scores 1.0 when it is one of `passing_labels`.
The `developer` role is sent as `system` (chat templates of open-weight models know no developer).
"""

from __future__ import annotations

import json
import math
from typing import Any

from trainer.graders import templates
from trainer.graders.context import ChatReply, ChatRequest, ModelCaller, ModelCallError
from trainer.graders.models import (
    GraderInputAudio,
    GraderInputImage,
    GraderInputText,
    GraderMessage,
    GraderOutputText,
    LabelModelGrader,
    ModelGrader,
    ScoreModelGrader,
)
from trainer.graders.results import GraderError, GradingFailure
from trainer.graders.templates import Sample


def validate(grader: ModelGrader, models: ModelCaller | None, param: str) -> None:
    for index, message in enumerate(grader.input):
        for text in _texts(message):
            templates.check(text, f"{param}.input.{index}.content")
    if models is None:
        raise GraderError("Model graders cannot run here: no model is available to grade with.", param)
    if not models.knows(grader.model):
        raise GraderError(
            f"The model `{grader.model}` is not served by this server for your organization; a model "
            "grader must use one of the models GET /v1/models lists.",
            f"{param}.model",
            code="model_not_found",
        )


async def ask(grader: ModelGrader, sample: Sample, item: Any, models: ModelCaller | None) -> ChatReply:
    """The model's reply (its tokens count whether or not it parses: see `reward`)."""
    if models is None:
        raise GradingFailure("model_grader_server_error", "No model is available to grade with.")
    request = ChatRequest(
        messages=[_message(message, sample, item) for message in grader.input],
        response_format=_response_format(grader),
        sampling=_sampling(grader),
    )
    try:
        return await models.chat(grader.model, request)
    except ModelCallError as exc:
        raise GradingFailure("model_grader_server_error", str(exc)) from None


def reward(grader: ModelGrader, reply: ChatReply) -> float:
    """The reward the reply gives; GradingFailure when it is a refusal or does not parse."""
    if reply.refusal:
        raise GradingFailure("model_grader_refusal_error", reply.refusal)
    result = _result(reply.text or "")
    if isinstance(grader, LabelModelGrader):
        if not isinstance(result, str) or result not in grader.labels:
            message = f"The model's reply is not one of the labels: {reply.text!r}"
            raise GradingFailure("model_grader_parse_error", message)
        return 1.0 if result in grader.passing_labels else 0.0
    if isinstance(result, str):
        try:
            result = float(result)
        except ValueError:
            result = None
    if isinstance(result, bool) or not isinstance(result, int | float) or not math.isfinite(result):
        raise GradingFailure("model_grader_parse_error", f"The model's reply is not a score: {reply.text!r}")
    low, high = grader.score_range
    return min(max(float(result), low), high)


def _result(text: str) -> Any:
    """`result` of a JSON object reply, else the reply itself, stripped (a bare number or label)."""
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return text.strip()
    if isinstance(parsed, dict):
        return parsed.get("result")
    return parsed if isinstance(parsed, int | float) and not isinstance(parsed, bool) else text.strip()


def _response_format(grader: ModelGrader) -> dict[str, Any]:
    if isinstance(grader, ScoreModelGrader):
        result: dict[str, Any] = {"type": "number"}
        name = "score"
    else:
        result = {"type": "string", "enum": list(dict.fromkeys(grader.labels))}
        name = "label"
    schema = {
        "type": "object",
        "properties": {"result": result},
        "required": ["result"],
        "additionalProperties": False,
    }
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}


def _sampling(grader: ModelGrader) -> dict[str, Any]:
    params = grader.sampling_params if isinstance(grader, ScoreModelGrader) else None
    if params is None:
        return {}
    sampling = {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "seed": params.seed,
        "max_completion_tokens": params.max_completions_tokens,
    }
    return {key: value for key, value in sampling.items() if value is not None}


def _message(message: GraderMessage, sample: Sample, item: Any) -> dict[str, Any]:
    role = "system" if message.role == "developer" else message.role
    content = message.content
    if isinstance(content, str):
        return {"role": role, "content": templates.render(content, sample, item)}
    parts = [_part(part, sample, item) for part in (content if isinstance(content, list) else [content])]
    if all(part["type"] == "text" for part in parts):
        return {"role": role, "content": "\n".join(part["text"] for part in parts)}
    return {"role": role, "content": parts}


Part = str | GraderInputText | GraderOutputText | GraderInputImage | GraderInputAudio


def _part(part: Part, sample: Sample, item: Any) -> dict[str, Any]:
    if isinstance(part, str):
        return {"type": "text", "text": templates.render(part, sample, item)}
    if isinstance(part, GraderInputText | GraderOutputText):
        return {"type": "text", "text": templates.render(part.text, sample, item)}
    if isinstance(part, GraderInputImage):
        image: dict[str, Any] = {"url": templates.render(part.image_url, sample, item)}
        if part.detail:
            image["detail"] = part.detail
        return {"type": "image_url", "image_url": image}
    return {"type": "input_audio", "input_audio": part.input_audio.model_dump()}


def _texts(message: GraderMessage) -> list[str]:
    """The message's strings that may hold template variables."""
    content = message.content
    parts = content if isinstance(content, list) else [content]
    texts: list[str] = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, GraderInputText | GraderOutputText):
            texts.append(part.text)
        elif isinstance(part, GraderInputImage):
            texts.append(part.image_url)
    return texts
