"""`--engine-url`: a gateway that uses an already running vLLM instead of starting its own."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from openai import OpenAI

from tests.e2e.conftest import BASE_MODEL, Server
from tests.e2e.engine_key import engine_api_key
from tests.e2e.jobs import wait_for_job
from tests.e2e.server import running_server
from tests.strict_format import jsonl, training_examples

pytestmark = pytest.mark.e2e


def test_gateway_on_an_existing_engine(server: Server, tiny_model: Path, tmp_path: Path) -> None:
    # The session server's managed engine stands in for a vLLM someone already runs.
    engine_url = server.engine_url
    with running_server(
        tiny_model,
        BASE_MODEL,
        tmp_path,
        "sk-other",
        extra_args=["--engine-url", engine_url],
        env_overrides={"OPENTUNE_ENGINE_API_KEY": engine_api_key(engine_url)},
    ) as other:
        assert not (tmp_path / "logs" / "engine.log").exists(), "no engine of its own"
        client = OpenAI(base_url=f"{other.url}/v1", api_key="sk-other", max_retries=0)
        assert [m.id for m in client.models.list()] == [BASE_MODEL]
        file = client.files.create(
            file=("t.jsonl", io.BytesIO(jsonl(training_examples(10)))), purpose="fine-tune"
        )
        job = client.fine_tuning.jobs.create(
            model=BASE_MODEL, training_file=file.id, hyperparameters={"n_epochs": 1, "batch_size": 5}
        )
        done = wait_for_job(client, job.id)
        assert done.status == "succeeded", done.error
        reply = client.chat.completions.create(
            model=done.fine_tuned_model or "", messages=[{"role": "user", "content": "x"}], max_tokens=4
        )
        assert reply.model == done.fine_tuned_model
