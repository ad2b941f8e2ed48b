"""Several base models from a models file, each with its own engine."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from tests.e2e.conftest import API_KEY
from tests.e2e.engine_key import engine_headers
from tests.e2e.jobs import wait_for_job
from tests.e2e.server import running_server
from tests.strict_format import jsonl, training_examples

pytestmark = pytest.mark.e2e


def test_two_base_models_each_with_its_engine(tiny_model: Path, tmp_path: Path) -> None:
    models_file = tmp_path / "models.json"
    models_file.write_text(
        json.dumps(
            {
                "models": [
                    {"name": "tiny-a", "model": str(tiny_model)},
                    {"name": "tiny-b", "model": str(tiny_model)},
                ]
            }
        )
    )
    data = tmp_path / "data"
    data.mkdir()
    with running_server(
        tiny_model, "ignored", data, API_KEY, extra_args=["--models-file", str(models_file)]
    ) as server:
        client = OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0)
        assert [m.id for m in client.models.list()] == ["tiny-a", "tiny-b"]
        for name in ("tiny-a", "tiny-b"):
            reply = client.chat.completions.create(
                model=name, messages=[{"role": "user", "content": "x"}], max_tokens=2
            )
            assert reply.model == name

        file = client.files.create(
            file=("t.jsonl", io.BytesIO(jsonl(training_examples(10)))), purpose="fine-tune"
        )
        job = client.fine_tuning.jobs.create(
            model="tiny-b", training_file=file.id, hyperparameters={"n_epochs": 1, "batch_size": 5}
        )
        done = wait_for_job(client, job.id)
        assert done.status == "succeeded", done.error
        model = done.fine_tuned_model or ""
        assert model.startswith("ft:tiny-b:default::")
        assert client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "x"}], max_tokens=2
        )

        engines = re.findall(r"Engine ready at (http://\S+)", server.log_path.read_text())
        served = {
            url: {m["id"] for m in httpx.get(f"{url}/v1/models", headers=engine_headers(url)).json()["data"]}
            for url in engines
        }
        assert len(served) == 2
        assert [url for url, ids in served.items() if model in ids] == [
            url for url, ids in served.items() if "tiny-b" in ids
        ], "the adapter lives in its base model's engine"

        with pytest.raises(openai.BadRequestError) as err:
            client.fine_tuning.jobs.create(model="tiny", training_file=file.id)
        assert "tiny-a" in err.value.message and "tiny-b" in err.value.message
        with pytest.raises(openai.NotFoundError) as missing:
            client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}])
        assert "tiny-a" in missing.value.message
