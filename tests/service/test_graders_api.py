"""/v1/fine_tuning/alpha/graders/run and /validate through the real router, error handlers and
grader service, in front of a stand-in for vLLM on uvicorn (model graders reach it through the
same serving path as chat completions: the organization's limits and cache salt included)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from service import api
from service.auth import Principal
from service.catalog import ModelCatalog
from service.deps import Components, components, principal
from service.engine.adapters import AdapterRegistry
from service.engine.client import EngineClient
from service.engine.fleet import EngineFleet
from service.engine.limits import ChatCaps, ChatLimits
from service.errors import install_error_handlers
from service.graders import GraderService
from service.jobs.checkpoints import CheckpointStore
from service.jobs.model_records import JobModelRecords
from service.jobs.store import JobStore
from service.store import Database
from tests.service.fake_embedder import Embedder
from tests.service.fake_engine import one_replica
from tests.service.threaded_server import serve_in_thread
from trainer.graders import EmbeddingsEndpoint, Sandbox, SandboxLimits

MODEL = "tiny"
RUN = "/v1/fine_tuning/alpha/graders/run"
VALIDATE = "/v1/fine_tuning/alpha/graders/validate"
ERROR_FLAGS = {
    "formula_parse_error",
    "invalid_variable_error",
    "model_grader_parse_error",
    "model_grader_refusal_error",
    "model_grader_server_error",
    "model_grader_server_error_details",
    "other_error",
    "python_grader_runtime_error",
    "python_grader_runtime_error_details",
    "python_grader_server_error",
    "python_grader_server_error_type",
    "sample_parse_error",
    "truncated_observation_error",
    "unresponsive_reward_error",
}


@dataclass
class FakeEngine:
    """Answers chat completions like vLLM with `reply` (a 500 when it is None)."""

    reply: str | None = '{"result": 0.7}'
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def complete(request: Request) -> Response:
            self.bodies.append(await request.json())
            if self.reply is None:
                return JSONResponse({"error": {"message": "engine exploded", "type": "x", "code": 500}}, 500)
            message = {"role": "assistant", "content": self.reply, "refusal": None}
            usage = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
            return JSONResponse(
                {"id": "c", "object": "chat.completion", "choices": [{"message": message}]} | {"usage": usage}
            )

        return app


@dataclass
class Gateway:
    http: httpx.Client
    engine: FakeEngine
    limits: ChatLimits


def _org_from_header(request: Request) -> Principal:
    return Principal(request.headers.get("x-org", "org-a"))


@contextmanager
def _gateway(
    tmp_path: Path, sandbox: Sandbox, embeddings: EmbeddingsEndpoint | None = None
) -> Iterator[Gateway]:
    engine = FakeEngine()
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate()
    with serve_in_thread(engine.app()) as engine_url:
        client = EngineClient(engine_url)
        fleet = EngineFleet([one_replica(MODEL, tmp_path, client, AdapterRegistry(client, 2))])
        jobs, checkpoints = JobStore(db), CheckpointStore(db)
        catalog = ModelCatalog(JobModelRecords(jobs, checkpoints), fleet, started_at=0)
        limits = ChatLimits(ChatCaps(max_concurrent=2, max_n=4, max_tokens=100))
        unused: Any = None  # the graders router touches none of the rest
        parts = Components(**dict.fromkeys(Components.__dataclass_fields__, unused))
        parts.catalog, parts.fleet, parts.chat_limits = catalog, fleet, limits
        parts.graders = GraderService(catalog, fleet, limits, sandbox, embeddings)

        @asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            yield
            await client.close()  # in the loop its relay session was made in

        app = FastAPI(lifespan=lifespan)
        install_error_handlers(app)
        app.include_router(api.graders.router, prefix="/v1")
        app.dependency_overrides[components] = lambda: parts
        app.dependency_overrides[principal] = _org_from_header
        with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as http:
            yield Gateway(http, engine, limits)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with _gateway(tmp_path, Sandbox(SandboxLimits(time_limit_s=5, hidden_paths=(data_dir,)))) as started:
        yield started


def _string_check(**change: Any) -> dict[str, Any]:
    return {
        "type": "string_check",
        "name": "exact",
        "operation": "eq",
        "input": "{{sample.output_json.city}}",
        "reference": "{{item.city}}",
    } | change


SCORE = {
    "type": "score_model",
    "name": "judge",
    "model": MODEL,
    "input": [{"role": "user", "content": "Rate {{sample.output_text}} against {{item.city}}."}],
    "sampling_params": {"temperature": 0, "max_completions_tokens": 20},
}
MULTI = {"type": "multi", "name": "m", "graders": {"a": _string_check()}, "calculate_output": "a"}


def test_validate_echoes_a_valid_grader(gateway: Gateway) -> None:
    answer = gateway.http.post(VALIDATE, json={"grader": _string_check(extra_field=1)})
    assert answer.status_code == 200, answer.text
    assert answer.json()["grader"] == _string_check()
    judge = gateway.http.post(VALIDATE, json={"grader": SCORE}).json()["grader"]
    assert judge["model"] == MODEL and "range" not in judge  # unset fields are left out


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"grader": _string_check(operation="contains")}, "grader.operation"),
        ({"grader": _string_check(input="{{secret.x}}")}, "grader.input"),
        ({"grader": {**SCORE, "model": "gpt-4o"}}, "grader.model"),
        ({"grader": MULTI | {"calculate_output": "b"}}, "grader.calculate_output"),
        ({"grader": {"type": "text_similarity", "name": "c", "input": "a", "reference": "b"}}, None),
        ({"grader": {"type": "nope"}}, "grader"),
        ({}, "grader"),
    ],
)
def test_invalid_graders_are_400_in_openais_envelope(
    gateway: Gateway, body: dict[str, Any], param: str | None
) -> None:
    for path in (VALIDATE, RUN):
        answer = gateway.http.post(path, json={"model_sample": "x", **body})
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        if param is not None:
            assert error["param"] == param, error


def test_cosine_without_an_embedding_model_is_a_clear_400(gateway: Gateway) -> None:
    grader = {
        "type": "text_similarity",
        "name": "c",
        "input": "a",
        "reference": "b",
        "evaluation_metric": "cosine",
    }
    answer = gateway.http.post(VALIDATE, json={"grader": grader})
    assert answer.status_code == 400
    assert "no embedding model is configured" in answer.json()["error"]["message"]


def test_run_a_string_check(gateway: Gateway) -> None:
    body = {"grader": _string_check(), "model_sample": '{"city": "Paris"}', "item": {"city": "Paris"}}
    answer = gateway.http.post(RUN, json=body).json()
    assert answer["reward"] == 1.0
    assert answer["sub_rewards"] == {} and answer["model_grader_token_usage_per_model"] == {}
    metadata = answer["metadata"]
    assert (metadata["name"], metadata["type"], metadata["token_usage"]) == ("exact", "string_check", None)
    assert set(metadata["errors"]) == ERROR_FLAGS
    assert not any(metadata["errors"].values())
    assert metadata["execution_time"] >= 0


def test_a_grader_failing_on_the_sample_is_a_200_with_its_flag(gateway: Gateway) -> None:
    answer = gateway.http.post(RUN, json={"grader": _string_check(), "model_sample": "not json", "item": {}})
    assert answer.status_code == 200
    assert answer.json()["reward"] == 0.0
    assert answer.json()["metadata"]["errors"]["sample_parse_error"]


def test_score_model_through_the_servers_engine(gateway: Gateway) -> None:
    body = {"grader": SCORE, "model_sample": "Lyon", "item": {"city": "Paris"}}
    answer = gateway.http.post(RUN, json=body, headers={"x-org": "org-b"}).json()
    assert answer["reward"] == pytest.approx(0.7)
    assert answer["metadata"]["sampled_model_name"] == MODEL
    assert answer["metadata"]["token_usage"] == 17
    assert answer["model_grader_token_usage_per_model"] == {
        MODEL: {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17, "cached_tokens": 0}
    }
    sent = gateway.engine.bodies[-1]
    assert sent["messages"] == [{"role": "user", "content": "Rate Lyon against Paris."}]
    assert sent["response_format"]["type"] == "json_schema"
    assert (sent["temperature"], sent["max_completion_tokens"]) == (0, 20)
    assert sent["cache_salt"] == gateway.limits.cache_salt("org-b")  # the organization's own
    assert gateway.limits.in_flight("org-b") == 0


@pytest.mark.parametrize(
    ("reply", "flag"), [("not a number", "model_grader_parse_error"), (None, "model_grader_server_error")]
)
def test_model_grader_failures(gateway: Gateway, reply: str | None, flag: str) -> None:
    gateway.engine.reply = reply
    answer = gateway.http.post(RUN, json={"grader": SCORE, "model_sample": "x", "item": {"city": "P"}}).json()
    assert answer["reward"] == 0.0
    assert answer["metadata"]["errors"][flag]
    if reply is None:
        assert answer["metadata"]["errors"]["model_grader_server_error_details"] == "engine exploded"


def test_multi_grader_with_a_python_grader(gateway: Gateway) -> None:
    python = {"type": "python", "name": "len", "source": "def grade(sample, item):\n    return 0.25\n"}
    grader = {
        "type": "multi",
        "name": "both",
        "graders": {"exact": _string_check(), "length": python, "judge": SCORE},
        "calculate_output": "exact * 0.5 + length + judge ^ 2",
    }
    body = {"grader": grader, "model_sample": '{"city": "Paris"}', "item": {"city": "Paris"}}
    answer = gateway.http.post(RUN, json=body).json()
    assert answer["sub_rewards"] == pytest.approx({"exact": 1.0, "length": 0.25, "judge": 0.7})
    assert answer["reward"] == pytest.approx(0.5 + 0.25 + 0.49)
    assert answer["metadata"]["type"] == "multi"
    assert list(answer["model_grader_token_usage_per_model"]) == [MODEL]


def test_python_graders_are_refused_where_they_cannot_be_sandboxed(tmp_path: Path) -> None:
    with _gateway(tmp_path, Sandbox(SandboxLimits(bwrap="/nonexistent/bwrap"))) as gateway:
        python = {"type": "python", "name": "p", "source": "def grade(sample, item):\n    return 1\n"}
        answer = gateway.http.post(VALIDATE, json={"grader": python})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "grader.type"
    assert "bubblewrap" in answer.json()["error"]["message"]


def test_hostile_values_are_400s_not_500s(gateway: Gateway) -> None:
    for grader in (
        {"type": "python", "name": "p", "source": "(" * 10_000},
        {"type": "python", "name": "p", "source": "1+" * 50_000 + "1"},
        {
            "type": "multi",
            "name": "m",
            "graders": {"a": _string_check()},
            "calculate_output": "-" * 900 + "a",
        },
        {"type": "string_check", "name": "s", "operation": "eq", "input": "{{item." + "a." * 5000 + "}}"}
        | {"reference": "x"},
    ):
        answer = gateway.http.post(RUN, json={"grader": grader, "model_sample": json.dumps([[]] * 10)})
        assert answer.status_code in (200, 400), (grader["type"], answer.text[:200])


def test_cosine_is_a_400_without_an_embeddings_api_and_scores_with_one(tmp_path: Path) -> None:
    cosine = {
        "type": "text_similarity",
        "name": "close",
        "input": "{{sample.output_text}}",
        "reference": "{{item.city}}",
        "evaluation_metric": "cosine",
    }
    body = {"grader": cosine, "model_sample": "aab", "item": {"city": "b"}}
    sandbox = Sandbox(SandboxLimits(time_limit_s=5))
    (tmp_path / "without").mkdir()
    (tmp_path / "with").mkdir()
    with _gateway(tmp_path / "without", sandbox) as gateway:
        refused = gateway.http.post(RUN, json=body)
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "grader.evaluation_metric"
        assert "embedding model" in refused.json()["error"]["message"]
    embedder = Embedder()
    with serve_in_thread(embedder.app()) as url:
        endpoint = EmbeddingsEndpoint(url=f"{url}/v1", model="embed-small")
        with _gateway(tmp_path / "with", sandbox, endpoint) as gateway:
            answer = gateway.http.post(RUN, json=body)
            assert answer.status_code == 200, answer.text
            # "aab" -> (2, 1, 0), "b" -> (0, 1, 0): cosine 1 / sqrt(5).
            assert answer.json()["reward"] == pytest.approx(1 / 5**0.5)
    assert embedder.requests[0]["body"] == {"model": "embed-small", "input": ["aab", "b"]}
