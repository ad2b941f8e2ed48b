"""The trainer's model graders through the gateway's chat completions (trainer/gateway_models.py),
against a stand-in gateway on uvicorn: the job's token is sent, calls are bounded, a 429 is waited
out, failures score 0 with a message that names no address, and the reward a label_model grader
gives reaches GRPO's reward function (trainer/rewards.py)."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.service.threaded_server import serve_in_thread
from trainer.events import EventWriter
from trainer.gateway_models import GatewayModels
from trainer.graders import ChatRequest, ModelCallError
from trainer.rewards import GraderReward, checked_grader, grading_context
from trainer.spec import ModelGraderAccess, ReinforcementSettings

TOKEN = "sk-otg-test-token"
LABEL = {
    "type": "label_model",
    "name": "polite",
    "model": "tiny",
    "input": [{"role": "user", "content": "Polite? {{sample.output_text}} ({{item.tone}})"}],
    "labels": ["yes", "no"],
    "passing_labels": ["yes"],
}


@dataclass
class StandInGateway:
    """Answers POST /v1/chat/completions as the gateway does: 401 without the token, 404 for an
    unknown model, `busy` times 429 first, then the label the prompt asks for."""

    busy: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def complete(request: Request) -> JSONResponse:
            if request.headers.get("authorization") != f"Bearer {TOKEN}":
                return _error(401, "Incorrect API key provided.")
            body = await request.json()
            if self.busy > 0:
                self.busy -= 1
                return _error(429, "Too many requests in flight.", {"retry-after": "0"})
            if body["model"] != "tiny":
                return _error(404, f"The model `{body['model']}` does not exist.")
            self.bodies.append(body)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            await asyncio.sleep(0.05)  # concurrent calls overlap here
            self.in_flight -= 1
            label = "yes" if "kind" in body["messages"][-1]["content"] else "no"
            message = {"role": "assistant", "content": json.dumps({"result": label})}
            usage = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
            return JSONResponse({"choices": [{"message": message}], "usage": usage})

        return app


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
    return JSONResponse(body, status, headers=headers)


@pytest.fixture
def gateway() -> Iterator[tuple[StandInGateway, str]]:
    stand_in = StandInGateway()
    with serve_in_thread(stand_in.app()) as url:
        yield stand_in, url


def _settings(url: str, token: str = TOKEN, grader: dict[str, Any] = LABEL) -> ReinforcementSettings:
    access = ModelGraderAccess(gateway_url=url, token=token, max_concurrent=2)
    return ReinforcementSettings(grader=grader, model_graders=access)


def test_a_label_model_grader_rewards_samples_through_the_gateway(
    gateway: tuple[StandInGateway, str],
) -> None:
    stand_in, url = gateway
    stand_in.busy = 3  # the organization's chat limit, reached for a moment
    settings = _settings(url)
    context = grading_context(settings, hidden=[])
    stream = io.StringIO()
    items = [{"tone": "kind"}, {"tone": "rude"}]
    reward = GraderReward(checked_grader(settings, context), context, items, EventWriter(stream))
    completions = [[{"role": "assistant", "content": f"reply {n}"}] for n in range(6)]
    rewards = asyncio.run(reward(completions=completions, row=[0, 1, 0, 1, 0, 1]))
    assert rewards == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert (reward.graded, reward.failed) == (6, 0) and stream.getvalue() == ""
    assert len(stand_in.bodies) == 6 and stand_in.most_in_flight == 2  # max_concurrent
    sent = stand_in.bodies[0]
    assert sent["response_format"]["json_schema"]["schema"]["properties"]["result"]["enum"] == ["yes", "no"]


def test_failures_score_zero_and_say_why_without_the_address(gateway: tuple[StandInGateway, str]) -> None:
    _stand_in, url = gateway
    for settings, why in (
        (_settings(url, token="sk-otg-ended"), "the job is no longer running"),
        (_settings(url, grader={**LABEL, "model": "gone"}), "The model `gone` does not exist."),
    ):
        context = grading_context(settings, hidden=[])
        stream = io.StringIO()
        reward = GraderReward(
            checked_grader(settings, context), context, [{"tone": "kind"}], EventWriter(stream)
        )
        assert asyncio.run(reward(completions=[[{"role": "assistant", "content": "x"}]], row=[0])) == [0.0]
        assert reward.failed == 1 and why in stream.getvalue() and url not in stream.getvalue()


def test_an_unreachable_gateway_is_a_model_call_error_after_its_attempts() -> None:
    access = ModelGraderAccess(gateway_url="http://127.0.0.1:9", token=TOKEN)
    models = GatewayModels(access, attempts=2, first_wait_s=0.01)
    request = ChatRequest(messages=[{"role": "user", "content": "x"}])
    with pytest.raises(ModelCallError) as failed:
        asyncio.run(models.chat("tiny", request))
    assert "could not be reached" in str(failed.value) and "127.0.0.1" not in str(failed.value)
