"""A job with a Weights & Biases integration, on the shared server (its trainers run with
WANDB_MODE=offline: tests/e2e/server.py): the job's events say where the run is, and the run's log
(what `wandb sync` would upload, read by tests/wandb_log.py) holds the job's hyperparameters, every
step's training loss as the job's own metrics events report it, and the adapter artifact."""

from __future__ import annotations

import io

import pytest
from openai import BadRequestError, OpenAI

from tests.e2e.conftest import BASE_MODEL
from tests.e2e.jobs import wait_for_job
from tests.e2e.server import Server
from tests.strict_format import jsonl, training_examples
from tests.wandb_log import artifacts, config, history

pytestmark = pytest.mark.e2e


def test_a_job_logs_its_run_to_wandb(server: Server, client: OpenAI) -> None:
    file = client.files.create(
        file=("w.jsonl", io.BytesIO(jsonl(training_examples(10)))), purpose="fine-tune"
    )
    wandb = {"project": "opentune-e2e", "name": "tiny-run", "tags": ["e2e"]}
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=file.id,
        hyperparameters={"n_epochs": 2, "batch_size": 5},
        integrations=[{"type": "wandb", "wandb": wandb}],  # type: ignore[list-item]
    )
    assert job.integrations and job.integrations[0].wandb.project == "opentune-e2e"
    done = wait_for_job(client, job.id)
    assert done.status == "succeeded", done.error
    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    assert any(
        f"Weights & Biases: run {job.id} in project opentune-e2e, offline" in e.message for e in events
    )
    steps = [e.data for e in events if e.type == "metrics" and isinstance(e.data, dict)]
    last = max(steps, key=lambda data: data["step"])

    runs = list((server.data_dir / "jobs" / job.id / "output" / "wandb").glob(f"offline-run-*-{job.id}"))
    assert len(runs) == 1, "one run folder for the job"
    log = runs[0] / f"run-{job.id}.wandb"
    logged = {h["train/global_step"]: h["train/loss"] for h in history(log) if "train/loss" in h}
    reported = {data["step"]: data["train_loss"] for data in steps}
    assert set(logged) == set(reported) and len(logged) == last["step"]
    assert all(logged[step] == pytest.approx(reported[step], rel=1e-4) for step in reported)
    settings = config(log)
    assert settings["n_epochs"] == 2 and settings["job_id"] == job.id
    assert artifacts(log) == [(f"{job.id}-adapter", "model")]


def test_a_job_with_another_integration_is_refused(client: OpenAI) -> None:
    file = client.files.create(
        file=("x.jsonl", io.BytesIO(jsonl(training_examples(10)))), purpose="fine-tune"
    )
    with pytest.raises(BadRequestError) as refused:
        client.fine_tuning.jobs.create(
            model=BASE_MODEL,
            training_file=file.id,
            integrations=[{"type": "wandb", "wandb": {"name": "no project"}}],  # type: ignore[list-item,typeddict-item]
        )
    assert refused.value.body["param"] == "integrations"  # type: ignore[index]
