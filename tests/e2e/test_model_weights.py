"""Getting weights out and in, against the real server: a trained model's adapter downloads as a
zip that peft loads on the tiny base and that answers as the served model does (greedy text and
log-probabilities); the same zip imports as another model that answers alike; broken imports are
400s naming why; another organization gets 404 for all of it."""

from __future__ import annotations

import io
import json
import logging
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import openai
import pytest
import torch
from openai import OpenAI
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.e2e.conftest import BASE_MODEL, Server
from tests.e2e.jobs import wait_for_job
from tests.e2e.test_tenancy import _create_key
from tests.service.adapter_files import adapter_files, adapter_tensors, zip_bytes
from tests.strict_format import jsonl, training_examples

pytestmark = pytest.mark.e2e
logger = logging.getLogger(__name__)

PROMPT = [{"role": "user", "content": "Classify: The train arrived late today."}]
NEW_TOKENS = 8
# vLLM's LoRA kernels and torch's matmuls round differently; the tiny model's logits are O(1).
LOGPROB_TOLERANCE = 1e-2


class Org:
    def __init__(self, server: Server, name: str) -> None:
        self.key = _create_key(server, name)
        self.sdk = OpenAI(base_url=f"{server.url}/v1", api_key=self.key, max_retries=0)
        self.http = httpx.Client(
            base_url=f"{server.url}/v1", headers={"Authorization": f"Bearer {self.key}"}, timeout=120
        )

    def download(self, model: str) -> httpx.Response:
        return self.http.get(f"/models/{quote(model, safe='')}/adapter")

    def import_zip(
        self, archive: bytes, base_model: str = BASE_MODEL, suffix: str = "imported"
    ) -> httpx.Response:
        return self.http.post(
            "/models/import",
            files={"file": ("adapter.zip", archive, "application/zip")},
            data={"base_model": base_model, "suffix": suffix},
        )

    def greedy(self, model: str) -> tuple[str, list[float]]:
        reply = self.sdk.chat.completions.create(
            model=model,
            messages=PROMPT,  # type: ignore[arg-type]
            temperature=0,
            max_tokens=NEW_TOKENS,
            logprobs=True,
            top_logprobs=1,
        )
        choice = reply.choices[0]
        assert choice.logprobs is not None and choice.logprobs.content
        return choice.message.content or "", [t.logprob for t in choice.logprobs.content]


def _peft_greedy(base: Path, adapter: Path) -> tuple[str, list[float]]:
    """The adapter loaded with peft on the base: its greedy answer and each chosen token's log-prob."""
    tokenizer = AutoTokenizer.from_pretrained(adapter)  # the adapter's own, with its chat template
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), adapter
    )
    model.eval()
    inputs: Any = tokenizer.apply_chat_template(
        PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    prompt_length = inputs["input_ids"].shape[1]
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0)
        logits = model(output).logits[0, prompt_length - 1 : -1].float()
    chosen = output[0, prompt_length:]
    logprobs = torch.log_softmax(logits, dim=-1).gather(1, chosen[:, None])[:, 0]
    return str(tokenizer.decode(chosen, skip_special_tokens=True)), logprobs.tolist()


def _error(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


def test_weights_out_load_in_peft_and_come_back_in_as_a_model(
    server: Server, tiny_model: Path, tmp_path: Path
) -> None:
    owner, stranger = Org(server, "weights"), Org(server, "weights-other")
    data = io.BytesIO(jsonl(training_examples(10)))
    training = owner.sdk.files.create(file=("w.jsonl", data), purpose="fine-tune")
    job = owner.sdk.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=training.id,
        suffix="weights",
        seed=42,
        hyperparameters={"n_epochs": 2, "batch_size": 2, "learning_rate_multiplier": 10},
    )
    done = wait_for_job(owner.sdk, job.id)
    assert done.status == "succeeded" and done.fine_tuned_model, done.error
    model = done.fine_tuned_model

    # Out: a zip peft and vLLM take as is, answering as the served model does.
    response = owner.download(model)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == f'attachment; filename="{model.replace(":", "-")}.zip"'
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    names = set(archive.namelist())
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "tokenizer_config.json"} <= names
    config = json.loads(archive.read("adapter_config.json"))
    assert config["base_model_name_or_path"] == BASE_MODEL  # the base is a local folder: its served name
    card = archive.read("README.md").decode()
    assert job.id in card and "trained tokens" in card and "final metrics" in card
    folder = tmp_path / "adapter"
    archive.extractall(folder)
    served_text, served_logprobs = owner.greedy(model)
    peft_text, peft_logprobs = _peft_greedy(tiny_model, folder)
    assert peft_text == served_text
    compared = min(len(served_logprobs), len(peft_logprobs))
    differences = [
        abs(a - b) for a, b in zip(served_logprobs[:compared], peft_logprobs[:compared], strict=True)
    ]
    logger.info("log-prob differences, served vs peft, over %d tokens: max %.2e", compared, max(differences))
    assert compared >= 2 and max(differences) < LOGPROB_TOLERANCE, differences

    # In: the same zip is another model of the organization, answering alike at once.
    imported = owner.import_zip(response.content)
    assert imported.status_code == 200, imported.text
    created = imported.json()
    assert created["id"].startswith(f"ft:{BASE_MODEL}:weights:imported:") and created["object"] == "model"
    assert created["owned_by"] == "org-weights"
    assert created["id"] in [m.id for m in owner.sdk.models.list()]
    assert owner.sdk.models.retrieve(created["id"]).owned_by == "org-weights"
    assert owner.greedy(created["id"])[0] == served_text
    assert owner.download(created["id"]).status_code == 200

    # Broken imports: a 400 each, saying why.
    wrong_base = zip_bytes(adapter_files(tensors=adapter_tensors(hidden=48, layers=1)))
    too_high = adapter_files()
    too_high["adapter_config.json"] = json.dumps({**config, "r": 128}).encode()
    refusals = {
        "wrong base": (owner.import_zip(wrong_base), "trained for another base model"),
        "rank": (owner.import_zip(zip_bytes(too_high)), "LoRA rank 128 is higher"),
        "corrupt": (owner.import_zip(response.content[: len(response.content) // 2]), "not a zip archive"),
    }
    for case, (refused, reason) in refusals.items():
        assert refused.status_code == 400, (case, refused.text)
        assert reason in _error(refused)["message"] and _error(refused)["param"] == "file", case

    # Another organization: nothing of it exists.
    assert stranger.download(model).status_code == 404
    assert stranger.download(created["id"]).status_code == 404
    onto = stranger.import_zip(response.content, base_model=model)
    assert onto.status_code == 404 and _error(onto)["param"] == "base_model"
    with pytest.raises(openai.NotFoundError):
        stranger.sdk.models.delete(created["id"])

    # Deleted: gone for chat and download.
    assert owner.sdk.models.delete(created["id"]).deleted
    with pytest.raises(openai.NotFoundError):
        owner.greedy(created["id"])
    assert owner.download(created["id"]).status_code == 404
    assert owner.greedy(model)[0] == served_text  # the source is untouched
