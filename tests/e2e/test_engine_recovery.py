"""The managed engine dies mid-traffic: the gateway answers 503 with retry-after, restarts it, and
serves again (adapters included) without a gateway restart."""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path
from urllib.parse import urlparse

import openai
import pytest
from openai import OpenAI

from tests.e2e.conftest import API_KEY, BASE_MODEL
from tests.e2e.jobs import wait_for_job
from tests.e2e.processes import descendants, engine_nice_values, engine_pid
from tests.e2e.server import running_server
from tests.strict_format import jsonl, training_examples

pytestmark = pytest.mark.e2e


def test_engine_killed_mid_traffic_comes_back(tiny_model: Path, tmp_path: Path) -> None:
    with running_server(tiny_model, BASE_MODEL, tmp_path, API_KEY) as server:
        client = OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0)
        file = client.files.create(
            file=("t.jsonl", io.BytesIO(jsonl(training_examples(10)))), purpose="fine-tune"
        )
        job = client.fine_tuning.jobs.create(
            model=BASE_MODEL, training_file=file.id, hyperparameters={"n_epochs": 1, "batch_size": 5}
        )
        model = wait_for_job(client, job.id).fine_tuned_model or ""
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], max_tokens=2)

        # The engine's processes are found first, so that it is killed the moment the stream has
        # started: the tiny model takes many seconds for 8,000 tokens, so the stream cannot end normally.
        root = engine_pid(urlparse(server.engine_url).port or 0)
        engine_processes = [root, *descendants(root)]
        started = time.monotonic()
        stream = client.chat.completions.create(
            model=BASE_MODEL,
            messages=[{"role": "user", "content": "A long story."}],
            max_tokens=8000,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        for pid in engine_processes:
            os.kill(pid, signal.SIGKILL)
        killed_after = time.monotonic() - started
        # The stream had started: the failure arrives as an SSE error event, which the SDK raises.
        received, error = 0, None
        try:
            for _ in stream:
                received += 1
        except openai.APIError as exc:
            error = exc
        assert error is not None and "engine failed while streaming" in str(error), (
            f"the stream ended with {error!r} after {received} chunks; the engine was killed "
            f"{killed_after:.2f} s after the request"
        )
        statuses = []
        deadline = time.monotonic() + 300
        while True:
            assert time.monotonic() < deadline, f"no recovery; statuses seen: {statuses}"
            try:
                client.chat.completions.create(
                    model=BASE_MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=2
                )
                break
            except openai.InternalServerError as exc:
                statuses.append(exc.status_code)
                assert exc.status_code == 503 and exc.response.headers.get("retry-after")
                time.sleep(1)
        assert statuses, "requests during the restart were refused with 503"
        assert server.process.poll() is None, "the gateway itself kept running"
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "x"}], max_tokens=2
        )
        assert reply.model == model  # its adapter was loaded again on demand
        # The new engine's core spins as the first one did: lowered too (service/engine/cpu_priority.py).
        assert engine_nice_values(urlparse(server.engine_url).port or 0)["VLLM::EngineCore"] == {10}
