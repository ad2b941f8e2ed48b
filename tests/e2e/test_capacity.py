"""A job that would not fit in the free memory waits in `queued`, saying why, and can be cancelled."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from openai import OpenAI

from tests.e2e.conftest import BASE_MODEL, Server
from tests.e2e.engine_key import engine_api_key
from tests.e2e.server import running_server
from tests.strict_format import jsonl, training_examples

pytestmark = pytest.mark.e2e


def test_job_that_does_not_fit_waits_in_queue(server: Server, tiny_model: Path, tmp_path: Path) -> None:
    with running_server(
        tiny_model,
        BASE_MODEL,
        tmp_path,
        "sk-capacity",
        extra_args=["--engine-url", server.engine_url],
        env_overrides={
            "OPENTUNE_TRAINER_MEMORY_GIB": "100000",  # more than any machine has free
            "OPENTUNE_ENGINE_API_KEY": engine_api_key(server.engine_url),
        },
    ) as gateway:
        client = OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-capacity", max_retries=0)
        file = client.files.create(
            file=("t.jsonl", io.BytesIO(jsonl(training_examples(10)))), purpose="fine-tune"
        )
        job = client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=file.id)
        deadline = time.monotonic() + 60
        while True:
            events = client.fine_tuning.jobs.list_events(job.id, limit=50).data
            waiting = [e for e in events if e.message.startswith("Waiting for memory")]
            if waiting:
                break
            assert time.monotonic() < deadline, [e.message for e in events]
            time.sleep(0.5)
        assert waiting[0].level == "warn" and "100000.0 GiB" in waiting[0].message
        time.sleep(3)  # several scheduler passes: still queued, and said once
        assert client.fine_tuning.jobs.retrieve(job.id).status == "queued"
        events = client.fine_tuning.jobs.list_events(job.id, limit=50).data
        assert sum(e.message.startswith("Waiting for memory") for e in events) == 1
        assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
