"""Bad requests get OpenAI's error shape and a 4xx, never a 500 or FastAPI's 422."""

from __future__ import annotations

import io

import httpx
import openai
import pytest
from openai import OpenAI

from tests.e2e.conftest import API_KEY, BASE_MODEL, Server
from tests.strict_format import jsonl, training_examples

pytestmark = pytest.mark.e2e


def _assert_openai_error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert response.headers.get("x-request-id")
    return dict(body["error"])


def test_missing_or_wrong_api_key_is_401(server: Server) -> None:
    error = _assert_openai_error(httpx.get(f"{server.url}/v1/models"), 401)
    assert error["code"] == "missing_api_key"
    with pytest.raises(openai.AuthenticationError) as err:
        OpenAI(base_url=f"{server.url}/v1", api_key="sk-wrong", max_retries=0).models.list()
    assert err.value.code == "invalid_api_key"


def test_unknown_model_for_fine_tuning_is_400(client: OpenAI) -> None:
    uploaded = client.files.create(
        file=("t.jsonl", io.BytesIO(jsonl(training_examples(12)))), purpose="fine-tune"
    )
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=uploaded.id)
    assert err.value.code == "model_not_available" and err.value.param == "model"
    assert BASE_MODEL in str(err.value.message)


def test_unknown_training_file_is_400(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(model=BASE_MODEL, training_file="file-doesnotexist")
    assert err.value.param == "training_file"


def test_unknown_ids_are_404(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-nope")
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve("file-nope")
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(
            model="ft:tiny:default::nope1234", messages=[{"role": "user", "content": "x"}]
        )
    assert err.value.code == "model_not_found"


def test_malformed_bodies_are_400_with_param(server: Server) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    url = f"{server.url}/v1/fine_tuning/jobs"
    error = _assert_openai_error(httpx.post(url, json={"model": BASE_MODEL}, headers=headers), 400)
    assert error["param"] == "training_file" and error["type"] == "invalid_request_error"
    error = _assert_openai_error(httpx.post(url, content=b"{not json", headers=headers), 400)
    error = _assert_openai_error(
        httpx.post(
            url, json={"model": BASE_MODEL, "training_file": "f", "suffix": "x" * 65}, headers=headers
        ),
        400,
    )
    assert error["param"] == "suffix"
    _assert_openai_error(
        httpx.post(f"{server.url}/v1/chat/completions", content=b"[1, 2]", headers=headers), 400
    )
    _assert_openai_error(
        httpx.post(
            f"{server.url}/v1/files", files={"file": ("a", b"x")}, data={"purpose": "nope"}, headers=headers
        ),
        400,
    )
