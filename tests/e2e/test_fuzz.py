"""Property-based fuzzing of the running server from its own OpenAPI description, with schemathesis.

Whatever a client sends, the server must answer below 500, and every error must be OpenAI's
envelope `{"error": {"message", "type", "param", "code"}}`: never FastAPI's 422 `{"detail": ...}`.

Three rounds over every operation of GET /openapi.json, all authenticated with the API key:

- schemathesis's coverage phase: deterministic boundary values, missing and wrongly typed
  parameters, unexpected methods;
- Hypothesis-generated requests that fit the schema and requests that violate it;
- requests that fit the schema, with real ids in the path (a file, a failed job, the base model)
  and a real training file in job bodies, so they reach the code behind the 404s. That training
  file has too few examples: the jobs it makes fail validation and never start a trainer.

Chat and text completions are left out: they forward to the engine and their bodies are not
described in the OpenAPI document, so fuzzing them would exercise vLLM, not this server
(test_conformance covers their errors).

Problems are collected over a whole round and reported together, each with a curl command that
reproduces it. Deterministic: derandomized Hypothesis without an example database, a fixed
schemathesis seed. About half a minute on 2 cores.

Uses schemathesis's Python API (`openapi.from_url`, `APIOperation.as_strategy`,
`BaseSchema.iter_coverage_cases`) rather than `schemathesis.pytest.from_fixture(...).parametrize()`:
that plugin sets `Node._nodeid`, which pytest 9.2 no longer has (schemathesis 4.32.5).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from openai import OpenAI
from schemathesis import APIOperation, BaseSchema, Case, GenerationMode, Response
from schemathesis.core.result import Ok

from tests.e2e.conftest import API_KEY, BASE_MODEL, Server
from tests.e2e.jobs import wait_for_job
from tests.strict_format import jsonl, training_examples

pytestmark = pytest.mark.e2e

SEED = 20_260_101
MAX_EXAMPLES = 100  # per operation and generation mode
MAX_EXAMPLES_WITH_REAL_IDS = 50  # per operation
REQUEST_TIMEOUT_S = 60
AUTH = {"Authorization": f"Bearer {API_KEY}"}
EXCLUDED_PATHS = r"^/v1/(chat/)?completions$"
ERROR_KEYS = {"message", "type", "param", "code"}
HYPOTHESIS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    phases=[Phase.explicit, Phase.generate],  # report what was found, without shrinking it
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


@dataclass
class Findings:
    """Problems seen in one round, one per (operation, status, kind), with the first request that
    showed each; and how many answers of each status each operation gave."""

    problems: dict[tuple[str, int, str], str] = field(default_factory=dict)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)

    def check(self, case: Case) -> None:
        response = case.call(headers=AUTH, timeout=REQUEST_TIMEOUT_S)
        self.statuses[(case.operation.label, response.status_code)] += 1
        problem = _problem(response)
        key = (case.operation.label, response.status_code, problem or "")
        if problem and key not in self.problems:
            self.problems[key] = (
                f"{case.operation.label} -> {response.status_code}: {problem}\n"
                f"    body: {response.text[:400]}\n"
                f"    repro: {case.as_curl_command(headers=AUTH)}"
            )

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def report(self) -> str:
        return f"{len(self.problems)} problem(s) in {self.requests} requests:\n" + "\n".join(
            self.problems.values()
        )


def _problem(response: Response) -> str | None:
    """What is wrong with this answer, if anything."""
    status = response.status_code
    if status >= 500:
        return "server error"
    if status == 422:
        return "422 (FastAPI's validation status; OpenAI answers 400)"
    if status < 400:
        return None
    try:
        body: Any = json.loads(response.content)
    except ValueError:
        return "error body is not JSON"
    if not isinstance(body, dict) or set(body) != {"error"}:
        return "not OpenAI's error envelope" + (" (FastAPI's `detail`)" if "detail" in body else "")
    error = body["error"]
    if not isinstance(error, dict) or set(error) != ERROR_KEYS:
        return f"error object keys are not {sorted(ERROR_KEYS)}"
    if not isinstance(error["message"], str) or not isinstance(error["type"], str):
        return "error message or type is not a string"
    return None


def _fuzz(strategy: st.SearchStrategy[Case], max_examples: int, findings: Findings) -> None:
    @settings(HYPOTHESIS, max_examples=max_examples)
    @given(case=strategy)
    def run(case: Case) -> None:
        findings.check(case)

    run()


def _fuzz_config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": AUTH,
            "request-timeout": REQUEST_TIMEOUT_S,
            "generation": {"mode": "all", "deterministic": True, "database": "none"},
        }
    )


@pytest.fixture(scope="module")
def api_schema(server: Server) -> BaseSchema:
    loaded = schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=_fuzz_config())
    return loaded.exclude(path_regex=EXCLUDED_PATHS)


@pytest.fixture(scope="module")
def operations(api_schema: BaseSchema) -> list[APIOperation]:
    results = list(api_schema.get_all_operations())
    broken = [result.err() for result in results if not isinstance(result, Ok)]
    assert not broken, f"operations schemathesis cannot read from /openapi.json: {broken}"
    return [result.ok() for result in results if isinstance(result, Ok)]


@dataclass(frozen=True)
class RealIds:
    path_parameters: dict[str, str]  # by parameter name
    training_file: str  # too few examples: a job made from it fails validation


@pytest.fixture(scope="module")
def real_ids(client: OpenAI) -> Iterator[RealIds]:
    def upload(data: bytes) -> str:
        return client.files.create(file=("fuzz.jsonl", io.BytesIO(data)), purpose="fine-tune").id

    too_few = upload(jsonl(training_examples(7)))
    job = client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=too_few)
    assert wait_for_job(client, job.id, timeout_s=120).status == "failed"
    scratch = upload(b"scratch\n")  # fuzzed DELETE /v1/files/{file_id} removes it
    # A webhook endpoint at a closed local port: a fuzzed test delivery fails at once (a 400).
    endpoint = client.webhooks.create(
        name="fuzz", url="http://127.0.0.1:9/hook", event_types=["fine_tuning.job.failed"]
    )
    # A pending upload: fuzzed parts are added to it, and a fuzzed cancel may end it.
    upload = client.uploads.create(
        bytes=3, filename="fuzz.jsonl", mime_type="text/jsonl", purpose="fine-tune"
    )
    path_parameters = {"file_id": scratch, "job_id": job.id, "model": BASE_MODEL, "upload_id": upload.id}
    yield RealIds({**path_parameters, "webhook_endpoint_id": endpoint.id}, too_few)
    with contextlib.suppress(openai.BadRequestError):  # its parts count against the quota until it ends
        client.uploads.cancel(upload.id)


@pytest.fixture(scope="module", autouse=True)
def no_endpoints_left(client: OpenAI) -> Iterator[None]:
    """The fuzzed endpoints go when the fuzzing ends: the tests after it share the organization,
    and its limit on endpoints, and would get deliveries sent to made-up addresses."""
    yield
    for endpoint in client.webhooks.list(limit=100):
        client.webhooks.delete(endpoint.id)


def test_openapi_document_describes_the_api(operations: list[APIOperation]) -> None:
    labels = {operation.label for operation in operations}
    expected = {
        "POST /v1/files",
        "GET /v1/files",
        "GET /v1/files/{file_id}",
        "DELETE /v1/files/{file_id}",
        "GET /v1/files/{file_id}/content",
        "POST /v1/uploads",
        "POST /v1/uploads/{upload_id}/parts",
        "POST /v1/uploads/{upload_id}/complete",
        "POST /v1/uploads/{upload_id}/cancel",
        "POST /v1/fine_tuning/jobs",
        "GET /v1/fine_tuning/jobs",
        "GET /v1/fine_tuning/jobs/{job_id}",
        "POST /v1/fine_tuning/jobs/{job_id}/cancel",
        "POST /v1/fine_tuning/jobs/{job_id}/pause",
        "POST /v1/fine_tuning/jobs/{job_id}/resume",
        "GET /v1/fine_tuning/jobs/{job_id}/events",
        "GET /v1/fine_tuning/jobs/{job_id}/checkpoints",
        "POST /v1/fine_tuning/alpha/graders/run",
        "POST /v1/fine_tuning/alpha/graders/validate",
        "GET /v1/models",
        "GET /v1/models/{model}",
        "DELETE /v1/models/{model}",
        "POST /v1/webhook_endpoints",
        "GET /v1/webhook_endpoints",
        "GET /v1/webhook_endpoints/{webhook_endpoint_id}",
        "POST /v1/webhook_endpoints/{webhook_endpoint_id}",
        "DELETE /v1/webhook_endpoints/{webhook_endpoint_id}",
        "POST /v1/webhook_endpoints/{webhook_endpoint_id}/rotate_secret",
        "POST /v1/webhook_endpoints/{webhook_endpoint_id}/test",
        "GET /v1/webhook_event_types",
        "POST /v1/fine_tuning/checkpoints/{fine_tuned_model_checkpoint}/permissions",
        "GET /v1/fine_tuning/checkpoints/{fine_tuned_model_checkpoint}/permissions",
        "DELETE /v1/fine_tuning/checkpoints/{fine_tuned_model_checkpoint}/permissions/{permission_id}",
    }
    assert expected <= labels, expected - labels
    assert not {label for label in labels if "completions" in label}


def test_openapi_document_does_not_promise_fastapi_422s(server: Server) -> None:
    """The server answers bad requests with 400 and OpenAI's envelope, so its API description must
    not tell clients (and generated SDKs) to expect FastAPI's 422 `HTTPValidationError` instead."""
    document = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    promising_422 = sorted(
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if "422" in operation.get("responses", {})
    )
    assert not promising_422, f"{len(promising_422)} operations document a 422: {promising_422}"
    assert "HTTPValidationError" not in document.get("components", {}).get("schemas", {})


def test_coverage_phase_cases(api_schema: BaseSchema, operations: list[APIOperation]) -> None:
    findings = Findings()
    for operation in operations:
        cases = api_schema.iter_coverage_cases(
            operation,
            generation_modes=list(GenerationMode),
            generation_config=api_schema.config.generation_for(operation=operation, phase="coverage"),
        )
        for case in cases:
            findings.check(case)
    assert findings.requests > 10 * len(operations)
    assert not findings.problems, findings.report()


def test_generated_requests(operations: list[APIOperation]) -> None:
    findings = Findings()
    for operation in operations:
        _fuzz(operation.as_strategy(generation_mode=GenerationMode.POSITIVE), MAX_EXAMPLES, findings)
        # Unsatisfiable: nothing to violate, in an operation without parameters or body
        # (GET /v1/models) or one whose only parameter is a path string, which any value satisfies.
        with contextlib.suppress(Unsatisfiable):
            _fuzz(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE), MAX_EXAMPLES, findings)
    assert findings.requests > MAX_EXAMPLES * len(operations) // 2
    assert not findings.problems, findings.report()


def test_generated_requests_with_real_ids(operations: list[APIOperation], real_ids: RealIds) -> None:
    def with_real_body_values(case: Case) -> Case:
        if case.operation.label == "POST /v1/fine_tuning/jobs" and isinstance(case.body, dict):
            case.body.update(model=BASE_MODEL, training_file=real_ids.training_file)
            case.body.pop("validation_file", None)
        elif case.operation.label == "POST /v1/files" and isinstance(case.body, dict):
            case.body["purpose"] = "fine-tune"
        return case

    findings = Findings()
    # Deletes last, so the other operations see the scratch file while it exists.
    for operation in sorted(operations, key=lambda op: op.method.upper() == "DELETE"):
        path_parameters = {
            p.name: real_ids.path_parameters[p.name]
            for p in operation.path_parameters
            if p.name in real_ids.path_parameters
        }
        if not path_parameters and operation.label not in ("POST /v1/fine_tuning/jobs", "POST /v1/files"):
            continue
        strategy = operation.as_strategy(path_parameters=path_parameters).map(with_real_body_values)
        _fuzz(strategy, MAX_EXAMPLES_WITH_REAL_IDS, findings)
    succeeded = {label for (label, status) in findings.statuses if status < 300}
    assert {"POST /v1/files", "POST /v1/fine_tuning/jobs", "GET /v1/fine_tuning/jobs/{job_id}"} <= succeeded
    assert not findings.problems, findings.report()
