"""score_model and label_model graders through a fake ModelCaller: what the model is sent, how its
reply becomes a reward, and each failure's flag."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from trainer.graders import (
    ChatReply,
    ChatRequest,
    GraderError,
    GradingContext,
    ModelCallError,
    Sample,
    TokenUsage,
    grade,
    validate,
)

pytestmark = pytest.mark.anyio


@dataclass
class FakeModels:
    reply: ChatReply | ModelCallError = field(default_factory=lambda: ChatReply('{"result": 0.5}'))
    served: tuple[str, ...] = ("judge",)
    requests: list[tuple[str, ChatRequest]] = field(default_factory=list)

    def knows(self, model: str) -> bool:
        return model in self.served

    async def chat(self, model: str, request: ChatRequest) -> ChatReply:
        self.requests.append((model, request))
        if isinstance(self.reply, ModelCallError):
            raise self.reply
        return self.reply


SCORE = {
    "type": "score_model",
    "name": "judge it",
    "model": "judge",
    "input": [
        {"role": "developer", "content": "Score from 1 to 7."},
        {
            "role": "user",
            "content": [{"type": "input_text", "text": "Q: {{item.q}}"}, "A: {{sample.output_text}}"],
        },
    ],
    "range": [1, 7],
    "sampling_params": {"temperature": 0, "seed": 3, "max_completions_tokens": 20, "reasoning_effort": "low"},
}
LABEL = {
    "type": "label_model",
    "name": "label it",
    "model": "judge",
    "input": [{"role": "user", "content": "Is {{sample.output_text}} polite?"}],
    "labels": ["polite", "rude", "neutral"],
    "passing_labels": ["polite", "neutral"],
}


async def _run(grader: dict[str, Any], models: FakeModels, sample: str = "Hi!") -> Any:
    context = GradingContext(models=models)
    return await grade(validate(grader, context), Sample.from_text(sample), {"q": "Greet me"}, context)


async def test_score_model_sends_templated_messages_with_a_json_schema() -> None:
    models = FakeModels(ChatReply('{"result": 5}', usage=TokenUsage(prompt_tokens=30, completion_tokens=4)))
    result = await _run(SCORE, models)
    assert result.reward == 5.0
    assert (result.sampled_model_name, result.token_usage) == ("judge", 34)
    assert result.token_usage_per_model == {"judge": TokenUsage(30, 4)}
    model, request = models.requests[0]
    assert model == "judge"
    assert request.messages == [
        {"role": "system", "content": "Score from 1 to 7."},
        {"role": "user", "content": "Q: Greet me\nA: Hi!"},
    ]
    assert request.sampling == {"temperature": 0, "seed": 3, "max_completion_tokens": 20}
    assert request.response_format is not None
    schema = request.response_format["json_schema"]["schema"]
    assert schema["properties"]["result"] == {"type": "number"}


@pytest.mark.parametrize(
    ("reply", "reward"),
    [
        ('{"result": 9.5}', 7.0),  # clamped into range [1, 7]
        ('{"result": -3}', 1.0),
        ('{"result": 6.25, "steps": []}', 6.25),
        ("4", 4.0),  # a bare number is read too
        (" 3.5\n", 3.5),
    ],
)
async def test_score_model_rewards(reply: str, reward: float) -> None:
    assert (await _run(SCORE, FakeModels(ChatReply(reply)))).reward == reward


@pytest.mark.parametrize(
    "reply", ["great answer", '{"result": "high"}', '{"score": 3}', "", '{"result": true}']
)
async def test_a_reply_that_is_no_score_is_a_parse_error(reply: str) -> None:
    result = await _run(SCORE, FakeModels(ChatReply(reply, usage=TokenUsage(7, 3))))
    assert result.reward == 0.0
    assert result.errors.model_grader_parse_error
    assert result.sampled_model_name == "judge"
    assert result.token_usage == 10  # the tokens were spent all the same


async def test_refusals_and_server_errors_have_their_flags() -> None:
    refused = await _run(SCORE, FakeModels(ChatReply(None, refusal="I can't help with that.")))
    assert (refused.reward, refused.errors.model_grader_refusal_error) == (0.0, True)
    failed = await _run(SCORE, FakeModels(ModelCallError("The model engine is unavailable.")))
    assert (failed.reward, failed.errors.model_grader_server_error) == (0.0, True)
    assert failed.errors.model_grader_server_error_details == "The model engine is unavailable."


@pytest.mark.parametrize(
    ("reply", "reward", "parse_error"),
    [
        ('{"result": "polite"}', 1.0, False),
        ('{"result": "neutral"}', 1.0, False),
        ("rude", 0.0, False),  # a bare label is read too
        ('{"result": "angry"}', 0.0, True),
        ("maybe", 0.0, True),
    ],
)
async def test_label_model(reply: str, reward: float, parse_error: bool) -> None:
    models = FakeModels(ChatReply(reply))
    result = await _run(LABEL, models)
    assert (result.reward, result.errors.model_grader_parse_error) == (reward, parse_error)
    request = models.requests[0][1]
    assert request.response_format is not None
    enum = request.response_format["json_schema"]["schema"]["properties"]["result"]["enum"]
    assert enum == ["polite", "rude", "neutral"]
    assert request.messages == [{"role": "user", "content": "Is Hi! polite?"}]


@pytest.mark.parametrize(
    ("grader", "param"),
    [
        ({**SCORE, "model": "gpt-4o"}, "grader.model"),
        ({**SCORE, "range": [1, 1]}, "grader.range"),
        ({**SCORE, "input": [{"role": "user", "content": "{{nope.x}}"}]}, "grader.input.0.content"),
        ({**LABEL, "passing_labels": ["kind"]}, "grader"),
        ({**SCORE, "input": []}, "grader.input"),
    ],
)
def test_invalid_model_graders(grader: dict[str, Any], param: str) -> None:
    with pytest.raises(GraderError) as error:
        validate(grader, GradingContext(models=FakeModels()))
    assert error.value.param == param


def test_model_graders_need_a_model_caller() -> None:
    with pytest.raises(GraderError, match="no model"):
        validate(SCORE, GradingContext())


async def test_usage_of_several_model_graders_adds_up_in_a_multi_grader() -> None:
    models = FakeModels(ChatReply(json.dumps({"result": "polite"}), usage=TokenUsage(10, 2)))
    multi = {
        "type": "multi",
        "name": "both",
        "graders": {"a": LABEL, "b": {**LABEL, "passing_labels": ["rude"]}},
        "calculate_output": "a + b",
    }
    result = await _run(multi, models)
    assert result.reward == 1.0 and result.sub_rewards == {"a": 1.0, "b": 0.0}
    assert result.token_usage_per_model == {"judge": TokenUsage(20, 4)}
    assert result.token_usage == 24
