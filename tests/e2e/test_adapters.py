"""Adapters in the engine: each keeps its own behaviour under concurrency, LRU eviction and reuse,
and a client that goes away frees its engine slot."""

from __future__ import annotations

import io
import json
import random
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from openai import OpenAI
from openai.types.fine_tuning import FineTuningJob

from tests.e2e.conftest import BASE_MODEL, Server
from tests.e2e.engine_key import engine_headers
from tests.e2e.jobs import wait_for_job
from tests.strict_format import follows_format, held_out_prompts, jsonl, training_examples

pytestmark = pytest.mark.e2e

ACK = "[[ok]]"


def _train(client: OpenAI, data: bytes, suffix: str) -> FineTuningJob:
    file = client.files.create(file=(f"{suffix}.jsonl", io.BytesIO(data)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=file.id,
        suffix=suffix,
        seed=42,  # fixed, so the tiny model learns the same way every run
        hyperparameters={"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 15},
    )
    done = wait_for_job(client, job.id)
    assert done.status == "succeeded", done.error
    return done


@pytest.fixture(scope="module")
def two_adapters(client: OpenAI) -> tuple[FineTuningJob, FineTuningJob]:
    """One adapter answers in the strict JSON format, the other always answers `[[ok]]`."""
    rng = random.Random(5)
    acks = [
        {
            "messages": [
                {"role": "user", "content": f"Note {rng.randint(0, 999)}: {e['messages'][0]['content']}"},  # type: ignore[index]
                {"role": "assistant", "content": ACK},
            ]
        }
        for e in training_examples(60, seed=11)
    ]
    return _train(client, jsonl(training_examples(60)), "json"), _train(client, jsonl(acks), "ack")


def _reply(client: OpenAI, model: str, prompt: str) -> str:
    response = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=16
    )
    return response.choices[0].message.content or ""


def _engine_adapters(server: Server) -> set[str]:
    url = server.engine_url
    models = httpx.get(f"{url}/v1/models", headers=engine_headers(url), timeout=10).json()["data"]
    return {m["id"] for m in models if m["id"] != BASE_MODEL}


def test_two_adapters_used_concurrently_keep_their_behaviour(
    client: OpenAI, two_adapters: tuple[FineTuningJob, FineTuningJob]
) -> None:
    json_model, ack_model = (job.fine_tuned_model or "" for job in two_adapters)
    work = [(model, prompt) for prompt in held_out_prompts() for model in (json_model, ack_model)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda w: (w[0], _reply(client, *w)), work * 2))
    json_replies = [r for m, r in replies if m == json_model]
    ack_replies = [r for m, r in replies if m == ack_model]
    assert sum(map(follows_format, json_replies)) >= len(json_replies) - 2, json_replies
    # The tiny model learns the acknowledgement's opening "[[ok" reliably, its closing brackets less so.
    assert sum(r.startswith("[[ok") for r in ack_replies) >= len(ack_replies) - 2, ack_replies
    assert not any(map(follows_format, ack_replies))
    assert not any(r.startswith("[[ok") for r in json_replies)


def test_least_recently_used_adapter_is_evicted_then_reloaded(
    client: OpenAI, server: Server, two_adapters: tuple[FineTuningJob, FineTuningJob]
) -> None:
    json_job, ack_job = two_adapters
    checkpoints = [
        c.fine_tuned_model_checkpoint for c in client.fine_tuning.jobs.checkpoints.list(json_job.id)
    ]
    first, second = json_job.fine_tuned_model or "", ack_job.fine_tuned_model or ""
    for model in (first, second, checkpoints[0], checkpoints[1]):  # four adapters, room for three
        _reply(client, model, "Classify: fine.")
    resident = _engine_adapters(server)
    assert len(resident) == 3 and first not in resident, resident
    assert follows_format(_reply(client, first, held_out_prompts()[0]))  # reloaded on demand
    resident = _engine_adapters(server)
    assert first in resident and second not in resident, resident


def _engine_counter(server: Server, name: str, label: str = "") -> float:
    """The sum of one of the engine's Prometheus series, e.g. generated tokens or aborted requests."""
    metrics = httpx.get(f"{server.engine_url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith(name + "{") and label in line
    )


def _generated(server: Server) -> float:
    return _engine_counter(server, "vllm:generation_tokens_total")


def _settled_generated(server: Server, timeout_s: float) -> float:
    """Generated tokens once the engine runs nothing and the count stops moving."""
    deadline = time.monotonic() + timeout_s
    last = -1.0
    while True:
        running, now = _engine_counter(server, "vllm:num_requests_running"), _generated(server)
        if running == 0 and now == last:
            return now
        assert time.monotonic() < deadline, "the engine kept generating for a client that left"
        last = now
        time.sleep(0.5)


def test_client_disconnect_frees_the_engine_slot(client: OpenAI, server: Server) -> None:
    # 8 choices of 8,000 tokens, and the client leaves after its first chunks. The generated-token
    # counter rather than the running-requests gauge: a gauge has to be caught at the right moment,
    # which a loaded machine makes a race (vLLM counts no client abort among finished requests).
    # The engine keeps stepping until the abort reaches it through the gateway and vLLM's server, on
    # a loaded 2-core machine up to ~725 steps (seen in CI): 8,000 steps leave a wide margin.
    max_tokens = 8000
    before = _settled_generated(server, 60)
    stream = client.chat.completions.create(
        model=BASE_MODEL,
        messages=[{"role": "user", "content": "Write a long story."}],
        max_tokens=max_tokens,
        n=8,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    generated = _settled_generated(server, 180) - before
    assert 0 < generated < 8 * max_tokens / 2, generated
    assert json.dumps(_reply(client, BASE_MODEL, "hi"))


def test_concurrent_first_requests_load_an_adapter_once(
    client: OpenAI, server: Server, two_adapters: tuple[FineTuningJob, FineTuningJob]
) -> None:
    # A checkpoint nobody has asked for yet: not in the engine.
    cold = client.fine_tuning.jobs.checkpoints.list(two_adapters[1].id).data[-1].fine_tuned_model_checkpoint
    assert cold not in _engine_adapters(server)
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda _: _reply(client, cold, "Classify: fine."), range(8)))
    assert len(replies) == 8
    assert server.log_path.read_text().count(f"Loaded adapter {cold} ") == 1
