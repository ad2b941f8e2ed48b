"""Merged export against the real server, through the stock openai SDK: a trained model exports as a
zip file of the organization that transformers loads on its own (no peft, no base model) and that
answers as the served model does; a bad format is a 400, another organization gets 404; a server
killed mid-export runs the export again when it starts."""

from __future__ import annotations

import io
import logging
import os
import signal
import time
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import openai
import pytest
import torch
from openai import OpenAI
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.e2e.conftest import API_KEY, BASE_MODEL, Server
from tests.e2e.jobs import wait_for_job
from tests.e2e.processes import descendants, still_running
from tests.e2e.server import running_server
from tests.e2e.test_tenancy import _create_key
from tests.strict_format import jsonl, training_examples

pytestmark = pytest.mark.e2e
logger = logging.getLogger(__name__)

PROMPT = [{"role": "user", "content": "Classify: The train arrived late today."}]
NEW_TOKENS = 8


def _exports(model: str) -> str:
    return f"/models/{quote(model, safe='')}/exports"


def start_export(client: OpenAI, model: str, export_format: str = "merged") -> dict[str, Any]:
    """POST /v1/models/{model}/exports with the SDK's own request machinery (and error mapping)."""
    found: dict[str, Any] = client.post(_exports(model), body={"format": export_format}, cast_to=dict)
    return found


def wait_for_export(
    client: OpenAI, model: str, export_id: str, until: tuple[str, ...] = ("succeeded", "failed")
) -> dict[str, Any]:
    deadline = time.monotonic() + 300
    while True:
        export: dict[str, Any] = client.get(f"{_exports(model)}/{export_id}", cast_to=dict)
        if export["status"] in until:
            return export
        assert time.monotonic() < deadline, f"export still {export['status']}"
        time.sleep(0.1)


def train_small_model(client: OpenAI, suffix: str) -> str:
    file = client.files.create(
        file=("train.jsonl", io.BytesIO(jsonl(training_examples(10)))), purpose="fine-tune"
    )
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=file.id,
        suffix=suffix,
        hyperparameters={"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 15},
    )
    done = wait_for_job(client, job.id)
    assert done.status == "succeeded", done.error
    return done.fine_tuned_model or ""


def unzip(client: OpenAI, file_id: str, dest: Path) -> Path:
    data = client.files.content(file_id).read()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(dest)
    return dest


def transformers_greedy(folder: Path) -> str:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype="auto").eval()
    assert model.dtype == torch.bfloat16, "the base's own dtype"
    inputs: Any = tokenizer.apply_chat_template(
        PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    return str(tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))


def served_greedy(client: OpenAI, model: str) -> str:
    reply = client.chat.completions.create(
        model=model,
        messages=PROMPT,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=NEW_TOKENS,
    )
    return reply.choices[0].message.content or ""


def test_a_merged_export_loads_in_transformers_and_answers_as_the_served_model(
    client: OpenAI, server: Server, tmp_path: Path
) -> None:
    model = train_small_model(client, "export")
    started = time.monotonic()
    export = start_export(client, model)
    assert (export["object"], export["model"], export["format"]) == ("model.export", model, "merged")
    assert export["status"] in ("queued", "running") and export["file_id"] is None
    done = wait_for_export(client, model, export["id"])
    seconds = time.monotonic() - started
    assert done["status"] == "succeeded", done["error"]
    file = client.files.retrieve(done["file_id"])
    assert file.purpose == "fine-tune-results" and file.filename.endswith("-merged.zip")
    logger.warning("Merged export of the tiny model: %.1f s, %d bytes", seconds, file.bytes)
    listed: dict[str, Any] = client.get(_exports(model), cast_to=dict)
    assert [e["id"] for e in listed["data"]] == [export["id"]]

    folder = unzip(client, done["file_id"], tmp_path / "merged")
    assert not list(folder.glob("adapter_*")), "plain weights, not an adapter"
    expected = served_greedy(client, model)
    assert transformers_greedy(folder) == expected
    assert expected != served_greedy(client, BASE_MODEL), "the fine-tuning must show in the answer"

    # A format other than merged is a 400 naming it; a base model is not exportable.
    with pytest.raises(openai.BadRequestError) as bad_format:
        start_export(client, model, "gguf")
    assert bad_format.value.body["param"] == "format"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        start_export(client, BASE_MODEL)

    # Another organization sees none of it.
    other = OpenAI(base_url=f"{server.url}/v1", api_key=_create_key(server, "export-other"), max_retries=0)
    with pytest.raises(openai.NotFoundError):
        start_export(other, model)
    with pytest.raises(openai.NotFoundError):
        other.get(f"{_exports(model)}/{export['id']}", cast_to=dict)
    with pytest.raises(openai.NotFoundError):
        other.files.content(done["file_id"])

    # Deleting the model leaves its export's file, a file of the organization.
    client.models.delete(model)
    assert client.files.retrieve(done["file_id"]).bytes == file.bytes
    assert wait_for_export(client, model, export["id"])["status"] == "succeeded"


def test_an_export_interrupted_by_a_killed_server_runs_again_after_its_restart(
    tiny_model: Path, tmp_path: Path
) -> None:
    with running_server(tiny_model, BASE_MODEL, tmp_path, API_KEY) as first:
        client = OpenAI(base_url=f"{first.url}/v1", api_key=API_KEY, max_retries=0)
        model = train_small_model(client, "restart")
        export = start_export(client, model)
        wait_for_export(client, model, export["id"], until=("running", "succeeded", "failed"))
        children = descendants(first.process.pid)
        exporting = {pid: c for pid, c in children.items() if " -m trainer.export " in c}
        assert exporting, "the export process must still run when the server is killed"
        port = int(first.url.rsplit(":", 1)[1])
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait()
        deadline = time.monotonic() + 60
        while still_running(exporting):  # it dies with the server
            assert time.monotonic() < deadline, "the export process outlived its server"
            time.sleep(0.2)
    # Same port, so the same gateway id: it takes its export back at once and runs it from scratch.
    with running_server(tiny_model, BASE_MODEL, tmp_path, API_KEY, port=port) as second:
        client = OpenAI(base_url=f"{second.url}/v1", api_key=API_KEY, max_retries=0)
        done = wait_for_export(client, model, export["id"])
        assert done["status"] == "succeeded", done["error"]
        assert f"Export {export['id']} was interrupted (attempt 1): now queued" in second.log_path.read_text()
        folder = unzip(client, done["file_id"], tmp_path / "merged")
        assert transformers_greedy(folder) == served_greedy(client, model)
        assert not list((tmp_path / "files").glob("*.partial")), "the interrupted attempt's zip is removed"
        zips = [f for f in client.files.list(purpose="fine-tune-results") if f.filename.endswith(".zip")]
        assert [f.id for f in zips] == [done["file_id"]]
