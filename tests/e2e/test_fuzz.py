"""Property-based fuzzing of the running server from its own OpenAPI description, with schemathesis.

Every operation gets schema-conforming and schema-violating requests (the coverage phase's boundary
values, then Hypothesis-generated ones), authenticated with the API key. Whatever is sent, the
server must answer below 500, and every error must be OpenAI's envelope
`{"error": {"message", "type", "param", "code"}}`: never FastAPI's `{"detail": ...}` nor a 422.

Chat and text completions are left out: they forward to the engine, and their bodies are not
described in the OpenAPI document (they are passed through as-is), so fuzzing them only exercises vLLM.

Deterministic (fixed seed, derandomized Hypothesis, no example database) and bounded in size, so one
run takes about a minute on 2 cores.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from schemathesis import Case

from tests.e2e.conftest import API_KEY, Server

pytestmark = pytest.mark.e2e

SEED = 20_260_101
MAX_EXAMPLES = 12  # per operation, in the fuzzing phase (the coverage phase adds its boundary cases)
EXCLUDED_PATHS = r"^/v1/(chat/)?completions$"
ERROR_KEYS = {"message", "type", "param", "code"}


def fuzz_config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": {"Authorization": f"Bearer {API_KEY}"},
            "request-timeout": 60,
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "phases": {"stateful": {"enabled": False}},
        }
    )


@pytest.fixture(scope="module")
def api_schema(server: Server) -> schemathesis.BaseSchema:
    loaded = schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=fuzz_config())
    return loaded.exclude(path_regex=EXCLUDED_PATHS)


schema = schemathesis.pytest.from_fixture("api_schema")


def _describe(case: Case, status: int, text: str) -> str:
    return f"{case.method} {case.formatted_path} -> {status}: {text[:500]}\nrepro: {case.as_curl_command()}"


@schema.parametrize()
def test_no_server_errors_and_only_openai_errors(case: Case) -> None:
    response = case.call()
    status = response.status_code
    assert status < 500, _describe(case, status, response.text)
    assert status != 422, _describe(case, status, response.text)
    if status < 400:
        return
    try:
        body: Any = json.loads(response.content)
    except ValueError:
        pytest.fail("error body is not JSON: " + _describe(case, status, response.text))
    assert isinstance(body, dict) and set(body) == {"error"}, _describe(case, status, response.text)
    error = body["error"]
    assert isinstance(error, dict) and set(error) == ERROR_KEYS, _describe(case, status, response.text)
    assert isinstance(error["message"], str) and isinstance(error["type"], str)
