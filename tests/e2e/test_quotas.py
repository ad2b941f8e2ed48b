"""Per-organization limits through the stock SDK, with organizations of their own (issue 9).

The server's limits are set in tests/e2e/server.py: 400 files, 64 MiB stored, 100M trained tokens
per job, 9 chat requests in flight per organization; chat caps are the defaults (n 8, 8192 tokens).
The active-jobs quota is covered by a unit test (tests/service/test_job_limits.py): reaching it here
would mean queuing dozens of jobs; fair scheduling has its own end-to-end test (test_fairness.py).
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.e2e.conftest import BASE_MODEL, Server
from tests.e2e.test_tenancy import _create_key

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
MAX_FILES = 400
CHAT_IN_FLIGHT = 9


def _client(server: Server, organization: str) -> OpenAI:
    key = _create_key(server, organization)
    return OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


def _upload(client: OpenAI, size: int) -> str:
    return client.files.create(file=("f.jsonl", io.BytesIO(b"x" * size)), purpose="fine-tune").id


def _chat(client: OpenAI, **fields: Any) -> Any:
    return client.chat.completions.create(
        model=BASE_MODEL, messages=[{"role": "user", "content": "hello"}], **{"max_tokens": 4, **fields}
    )


def test_chat_requests_in_flight_are_limited_per_organization(server: Server) -> None:
    busy, other = _client(server, "quota-chat-a"), _client(server, "quota-chat-b")
    with ExitStack() as streams:
        for _ in range(CHAT_IN_FLIGHT):
            # Long streams (8 choices of 8,000 tokens, EOS ignored) held open while the limit is
            # probed: the engine cannot finish one in the seconds the test takes, however loaded
            # the machine (900 tokens each could finish under load, as a CI run showed).
            stream = _chat(busy, stream=True, n=8, max_tokens=8000, extra_body={"ignore_eos": True})
            streams.enter_context(stream)
            next(iter(stream))
        with pytest.raises(openai.RateLimitError) as refused:
            _chat(busy)
        assert refused.value.code == "rate_limit_exceeded"
        assert refused.value.response.headers["retry-after"] == "1"
        assert _chat(other).choices  # another organization is not affected
    # Closing the streams gave the slots back (the gateway sees the disconnects within moments).
    deadline = time.monotonic() + 30
    while True:
        try:
            assert _chat(busy).choices
            break
        except openai.RateLimitError:
            assert time.monotonic() < deadline, "slots were not released after the streams closed"
            time.sleep(0.2)


@pytest.mark.parametrize(
    ("param", "fields"),
    [
        ("n", {"n": 9}),
        ("max_tokens", {"max_tokens": 8193}),
        ("max_completion_tokens", {"max_completion_tokens": 8193}),
    ],
)
def test_chat_request_over_a_cap_is_400_naming_it(client: OpenAI, param: str, fields: dict[str, Any]) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        _chat(client, **fields)
    assert refused.value.param == param


def test_text_completion_best_of_over_the_cap_is_400(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model=BASE_MODEL, prompt="hi", max_tokens=2, best_of=9)
    assert refused.value.param == "best_of"


def test_files_per_organization_are_limited(server: Server) -> None:
    crowded, other = _client(server, "quota-files-a"), _client(server, "quota-files-b")
    ids = [_upload(crowded, 10) for _ in range(MAX_FILES)]
    with pytest.raises(openai.RateLimitError) as refused:
        _upload(crowded, 10)
    assert refused.value.code == "quota_exceeded"
    assert _upload(other, 10)
    crowded.files.delete(ids[0])
    assert _upload(crowded, 10)


def test_stored_bytes_per_organization_are_limited(server: Server) -> None:
    crowded, other = _client(server, "quota-bytes-a"), _client(server, "quota-bytes-b")
    _upload(crowded, 40 * MIB)
    with pytest.raises(openai.RateLimitError) as refused:
        _upload(crowded, 30 * MIB)  # 70 MiB with what is stored
    assert refused.value.code == "quota_exceeded"
    assert [f.bytes for f in crowded.files.list()] == [40 * MIB]  # nothing left of the refused one
    assert _upload(other, 40 * MIB)


@pytest.fixture(scope="module")
def small_org(server: Server) -> Iterator[OpenAI]:
    client = _client(server, "quota-jobs")
    yield client
    for job in client.fine_tuning.jobs.list():  # only if a check below failed to refuse
        if job.status not in ("succeeded", "failed", "cancelled"):
            client.fine_tuning.jobs.cancel(job.id)


def test_job_that_could_train_too_many_tokens_is_refused(small_org: OpenAI) -> None:
    training = _upload(small_org, 3 * MIB)
    with pytest.raises(openai.BadRequestError) as refused:  # 3 MiB x 50 epochs > 100M tokens
        small_org.fine_tuning.jobs.create(
            model=BASE_MODEL, training_file=training, hyperparameters={"n_epochs": 50}
        )
    assert refused.value.code == "job_too_large"


@pytest.mark.parametrize(
    ("param", "fields"),
    [
        ("beta", {"method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": -5}}}}),
        ("n_epochs", {"hyperparameters": {"n_epochs": 51}}),
        ("suffix", {"suffix": "abc\n"}),
    ],
)
def test_out_of_range_job_request_is_400_naming_the_parameter(
    small_org: OpenAI, param: str, fields: dict[str, Any]
) -> None:
    training = _upload(small_org, 100)
    with pytest.raises(openai.BadRequestError) as refused:
        small_org.fine_tuning.jobs.create(model=BASE_MODEL, training_file=training, **fields)
    assert refused.value.param is not None and refused.value.param.endswith(param)


@pytest.mark.parametrize(
    ("param", "method"),
    [
        ("method.dpo.hyperparameters.beta", '{"type": "dpo", "dpo": {"hyperparameters": {"beta": NaN}}}'),
        (
            "method.supervised.hyperparameters.learning_rate_multiplier",
            '{"type": "supervised", "supervised": {"hyperparameters": '
            '{"learning_rate_multiplier": Infinity}}}',
        ),
    ],
)
def test_nan_or_infinity_is_400_naming_the_parameter(small_org: OpenAI, param: str, method: str) -> None:
    # The SDK refuses to encode NaN and Infinity; Python's JSON parser (hence the server) accepts them.
    training = _upload(small_org, 100)
    body = f'{{"model": "{BASE_MODEL}", "training_file": "{training}", "method": {method}}}'
    answer = httpx.post(
        f"{small_org.base_url}fine_tuning/jobs",
        content=body,
        headers={"Authorization": f"Bearer {small_org.api_key}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == param
