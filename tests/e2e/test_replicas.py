"""One base model on two engine replicas: adapters are routed to one replica each and keep their
behaviour under concurrent mixed traffic; a replica killed mid-traffic ends its streams with an
error event, its adapters move to the other replica, and it rejoins once restarted."""

from __future__ import annotations

import io
import os
import random
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import httpx
import openai
import pytest
from openai import OpenAI, Stream
from openai.types.chat import ChatCompletionChunk

from tests.e2e.conftest import API_KEY, BASE_MODEL
from tests.e2e.engine_key import engine_headers
from tests.e2e.jobs import wait_for_job
from tests.e2e.processes import descendants, engine_pid
from tests.e2e.server import Server, running_server
from tests.strict_format import held_out_prompts, jsonl, training_examples

pytestmark = pytest.mark.e2e

# Six adapters, each trained to answer every prompt with its own acknowledgement.
WORDS = ["ok", "no", "up", "go", "hi", "we"]


def _ack_data(word: str) -> bytes:
    rng = random.Random(word)
    return jsonl(
        [
            {
                "messages": [
                    {"role": "user", "content": f"Note {rng.randint(0, 999)}: {e['messages'][0]['content']}"},  # type: ignore[index]
                    {"role": "assistant", "content": f"[[{word}]]"},
                ]
            }
            for e in training_examples(40, seed=len(word) + ord(word[0]))
        ]
    )


def _train_all(client: OpenAI) -> dict[str, str]:
    """Every adapter's model name, by its word (the jobs queue together, then run one by one)."""
    jobs = {}
    for word in WORDS:
        file = client.files.create(file=(f"{word}.jsonl", io.BytesIO(_ack_data(word))), purpose="fine-tune")
        jobs[word] = client.fine_tuning.jobs.create(
            model=BASE_MODEL,
            training_file=file.id,
            suffix=word,
            seed=42,
            hyperparameters={"n_epochs": 2, "batch_size": 1, "learning_rate_multiplier": 15},
        ).id
    models = {}
    for word, job_id in jobs.items():
        done = wait_for_job(client, job_id)
        assert done.status == "succeeded", done.error
        models[word] = done.fine_tuned_model or ""
    return models


def _reply(client: OpenAI, model: str, prompt: str) -> str:
    response = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=8
    )
    return response.choices[0].message.content or ""


def _engine_urls(server: Server) -> list[str]:
    return sorted(set(re.findall(r"Engine ready at (http://\S+)", server.log_path.read_text())))


def _adapters_on(url: str) -> set[str]:
    models = httpx.get(f"{url}/v1/models", headers=engine_headers(url), timeout=10).json()["data"]
    return {m["id"] for m in models if m["id"] != BASE_MODEL}


def _check_behaviour(models: dict[str, str], replies: list[tuple[str, str]]) -> None:
    """Each adapter's replies open with its own acknowledgement (the tiny model learns the opening
    reliably), and never with another adapter's."""
    for word in WORDS:
        mine = [reply for w, reply in replies if w == word]
        own = sum(reply.startswith(f"[[{word}") for reply in mine)
        assert own >= len(mine) - 1, (word, mine)
        others = [w for w in WORDS if w != word]
        assert not any(reply.startswith(f"[[{w}") for reply in mine for w in others), (word, mine)


def test_adapters_stay_on_one_replica_and_survive_losing_it(tiny_model: Path, tmp_path: Path) -> None:
    # Room for all six adapters on either replica, in one batch (with fewer batch slots than
    # adapters, vLLM holds a request for a further adapter until another's requests finish).
    env = {
        "OPENTUNE_ENGINE_MAX_ADAPTERS": "6",
        "OPENTUNE_ENGINE_MAX_LORAS": "6",
        "OPENTUNE_ENGINE_HEALTH_INTERVAL_S": "1",
    }
    args = ["--engine-replicas", "2"]
    with running_server(
        tiny_model, BASE_MODEL, tmp_path, API_KEY, extra_args=args, env_overrides=env
    ) as server:
        client = OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0)
        urls = _engine_urls(server)
        assert len(urls) == 2, urls
        models = _train_all(client)

        # Mixed concurrent traffic: six workers, every adapter, four prompts, twice.
        work = [(word, prompt) for prompt in held_out_prompts()[:4] for word in WORDS] * 2
        with ThreadPoolExecutor(max_workers=6) as pool:
            replies = list(pool.map(lambda w: (w[0], _reply(client, models[w[0]], w[1])), work))
        _check_behaviour(models, replies)
        # Six requests at a time never saturate a replica: each adapter is loaded on exactly one.
        resident = {url: _adapters_on(url) for url in urls}
        for model in models.values():
            assert sum(model in held for held in resident.values()) == 1, resident

        # Streams to every adapter; those to the replica holding the first one are long (4 choices
        # of 8,000 tokens), started together and last, and that replica is killed once they run.
        victim = next(url for url in urls if models[WORDS[0]] in resident[url])
        doomed = {w for w in WORDS if models[w] in resident[victim]}

        def start(word: str) -> Stream[ChatCompletionChunk]:
            stream = client.chat.completions.create(
                model=models[word],
                messages=[{"role": "user", "content": "A long story."}],
                max_tokens=8000 if word in doomed else 50,
                n=4 if word in doomed else 1,
                stream=True,
                extra_body={"ignore_eos": True},
            )
            next(iter(stream))  # under way
            return stream

        streams = {word: start(word) for word in WORDS if word not in doomed}
        with ThreadPoolExecutor(max_workers=len(doomed)) as pool:
            streams |= dict(zip(doomed, pool.map(start, doomed), strict=True))
        root = engine_pid(urlparse(victim).port or 0)
        for pid in [root, *descendants(root)]:
            os.kill(pid, signal.SIGKILL)
        for word, stream in streams.items():
            chunks, error = 0, None
            try:
                for chunk in stream:  # noqa: B007 (the last one is checked)
                    chunks += 1
            except openai.APIError as exc:
                error = str(exc)
            if word in doomed:
                assert error and "engine failed while streaming" in error, (word, chunks, doomed, resident)
            else:
                assert error is None and chunk.choices[-1].finish_reason == "length", (word, chunks, error)

        # Every adapter keeps answering, the victim's now from the other replica: no request is
        # refused while it is down.
        replies = [
            (word, _reply(client, models[word], prompt))
            for prompt in held_out_prompts()[:2]
            for word in WORDS
        ]
        _check_behaviour(models, replies)
        (survivor,) = set(urls) - {victim}
        assert {models[w] for w in WORDS} <= _adapters_on(survivor)

        # The gateway restarts it, and routing sends its adapters back to it.
        deadline = time.monotonic() + 300
        while server.log_path.read_text().count(f"Engine ready at {victim}") < 2:
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(1)
        word = next(iter(doomed))
        while models[word] not in _adapters_on(victim):
            assert time.monotonic() < deadline, server.log_tail()
            assert _reply(client, models[word], "Classify: fine.").startswith(f"[[{word}")
            time.sleep(0.5)
