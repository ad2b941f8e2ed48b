"""Two organizations, each with its own API key: neither sees the other's files, jobs or models."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import openai
import pytest
from openai import OpenAI

from tests.e2e.conftest import BASE_MODEL, Server
from tests.e2e.jobs import wait_for_job
from tests.strict_format import jsonl, training_examples

pytestmark = pytest.mark.e2e


def _create_key(server: Server, organization: str) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "service",
            "keys",
            "create",
            "--org",
            organization,
            "--data-dir",
            str(server.data_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    key = result.stdout.strip()
    assert key.startswith("sk-ot-") and "shown only once" in result.stderr
    return key


@pytest.fixture(scope="module")
def orgs(server: Server) -> tuple[OpenAI, OpenAI, list[str]]:
    acme_key, globex_key = _create_key(server, "acme"), _create_key(server, "globex")
    acme = OpenAI(base_url=f"{server.url}/v1", api_key=acme_key, max_retries=0)
    globex = OpenAI(base_url=f"{server.url}/v1", api_key=globex_key, max_retries=0)
    return acme, globex, [acme_key, globex_key]


def test_keys_are_stored_hashed(server: Server, orgs: tuple[OpenAI, OpenAI, list[str]]) -> None:
    stored = b"".join(p.read_bytes() for p in server.data_dir.glob("opentune.db*"))
    for key in orgs[2]:
        assert key.encode() not in stored


def test_organizations_are_isolated(orgs: tuple[OpenAI, OpenAI, list[str]]) -> None:
    acme, globex, _ = orgs
    data = jsonl(training_examples(10))
    file = acme.files.create(file=("acme.jsonl", io.BytesIO(data)), purpose="fine-tune")
    job = acme.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=file.id,
        suffix="secret",
        hyperparameters={"n_epochs": 1, "batch_size": 5},
    )
    done = wait_for_job(acme, job.id)
    assert done.status == "succeeded", done.error
    assert done.organization_id == "org-acme"
    model = done.fine_tuned_model or ""
    assert model.startswith(f"ft:{BASE_MODEL}:acme:secret:")
    checkpoint = acme.fine_tuning.jobs.checkpoints.list(job.id).data[0].fine_tuned_model_checkpoint
    assert acme.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "x"}], max_tokens=2
    )

    hidden: list[Callable[[], Any]] = [
        lambda: globex.files.retrieve(file.id),
        lambda: globex.files.content(file.id),
        lambda: globex.files.delete(file.id),
        lambda: globex.files.retrieve(done.result_files[0]),
        lambda: globex.fine_tuning.jobs.retrieve(job.id),
        lambda: globex.fine_tuning.jobs.list_events(job.id),
        lambda: globex.fine_tuning.jobs.checkpoints.list(job.id),
        lambda: globex.fine_tuning.jobs.cancel(job.id),
        lambda: globex.fine_tuning.jobs.pause(job.id),
        lambda: globex.fine_tuning.jobs.resume(job.id),
        lambda: globex.models.retrieve(model),
        lambda: globex.models.retrieve(checkpoint),
        lambda: globex.models.delete(model),
        lambda: globex.models.delete(checkpoint),
        lambda: globex.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}]),
        lambda: globex.chat.completions.create(model=checkpoint, messages=[{"role": "user", "content": "x"}]),
        lambda: globex.completions.create(model=model, prompt="x"),
    ]
    for call in hidden:
        with pytest.raises(openai.NotFoundError):
            call()

    assert file.id not in [f.id for f in globex.files.list()]
    assert job.id not in [j.id for j in globex.fine_tuning.jobs.list()]
    globex_models = [m.id for m in globex.models.list()]
    assert globex_models == [BASE_MODEL]
    with pytest.raises(openai.BadRequestError) as err:
        globex.fine_tuning.jobs.create(model=BASE_MODEL, training_file=file.id)
    assert err.value.param == "training_file"

    # Nothing globex tried changed acme's objects.
    assert acme.files.retrieve(file.id).id == file.id
    assert acme.fine_tuning.jobs.retrieve(job.id).status == "succeeded"
    assert model in [m.id for m in acme.models.list()]


def test_default_key_still_works_alongside_organization_keys(client: OpenAI, orgs: Any) -> None:
    assert BASE_MODEL in [m.id for m in client.models.list()]
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=str(client.base_url), api_key="sk-ot-not-a-real-key", max_retries=0).models.list()
