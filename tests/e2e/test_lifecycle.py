"""Checkpoints, validation metrics, result files, pause/resume, model deletion, metadata filters."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import openai
import pytest
from openai import OpenAI
from openai.types.fine_tuning import FineTuningJob

from tests.e2e.conftest import BASE_MODEL, Server
from tests.e2e.jobs import wait_for_job
from tests.strict_format import jsonl, training_examples

pytestmark = pytest.mark.e2e


def _upload(client: OpenAI, examples: int, seed: int = 0) -> str:
    data = jsonl(training_examples(examples, seed=seed))
    return client.files.create(file=("data.jsonl", io.BytesIO(data)), purpose="fine-tune").id


@pytest.fixture(scope="module")
def validated_job(client: OpenAI) -> FineTuningJob:
    """20 examples x 4 epochs at batch 2 = 40 steps, with a validation file; 4 epoch checkpoints."""
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=_upload(client, 20),
        validation_file=_upload(client, 6, seed=7),
        suffix="val",
        metadata={"team": "search", "run": "validated"},
        method={
            "type": "supervised",
            "supervised": {
                "hyperparameters": {"n_epochs": 4, "batch_size": 2, "learning_rate_multiplier": 15}
            },
        },
    )
    done = wait_for_job(client, job.id)
    assert done.status == "succeeded", done.error
    return done


def test_validation_metrics_are_reported(client: OpenAI, validated_job: FineTuningJob) -> None:
    events = client.fine_tuning.jobs.list_events(validated_job.id, limit=1000).data
    metrics = [e.data for e in events if e.type == "metrics"]
    assert all(m["total_steps"] == 40 for m in metrics)
    with_validation = [m for m in metrics if "valid_loss" in m]
    assert with_validation and all("valid_mean_token_accuracy" in m for m in with_validation)
    assert any(m["step"] == 40 for m in with_validation), "a final validation at the last step"


def test_last_three_epoch_checkpoints_are_kept_and_served(
    client: OpenAI, validated_job: FineTuningJob
) -> None:
    checkpoints = client.fine_tuning.jobs.checkpoints.list(validated_job.id).data
    assert [c.step_number for c in checkpoints] == [40, 30, 20]
    model = validated_job.fine_tuned_model
    for checkpoint in checkpoints:
        assert checkpoint.id.startswith("ftckpt_")
        assert checkpoint.fine_tuning_job_id == validated_job.id
        assert checkpoint.fine_tuned_model_checkpoint == f"{model}:ckpt-step-{checkpoint.step_number}"
        assert checkpoint.metrics.train_loss is not None and checkpoint.metrics.valid_loss is not None
    page = client.fine_tuning.jobs.checkpoints.list(validated_job.id, limit=1)
    assert [c.step_number for c in page] == [40, 30, 20]  # auto-pagination terminates

    listed = [m.id for m in client.models.list()]
    assert all(c.fine_tuned_model_checkpoint in listed for c in checkpoints)
    oldest = checkpoints[-1].fine_tuned_model_checkpoint
    reply = client.chat.completions.create(
        model=oldest, messages=[{"role": "user", "content": "Classify: fine."}], max_tokens=8, temperature=0
    )
    assert reply.model == oldest and reply.choices[0].message.content is not None


def test_result_file_is_a_metrics_csv(client: OpenAI, validated_job: FineTuningJob) -> None:
    assert len(validated_job.result_files) == 2  # then eval_report.json (tests/e2e/test_evaluation_report.py)
    result = client.files.retrieve(validated_job.result_files[0])
    assert result.purpose == "fine-tune-results" and result.filename == "step_metrics.csv"
    rows = list(csv.DictReader(io.StringIO(client.files.content(result.id).text)))
    assert list(rows[0]) == [
        "step",
        "train_loss",
        "train_accuracy",
        "valid_loss",
        "valid_mean_token_accuracy",
    ]
    assert [int(r["step"]) for r in rows] == list(range(1, 41))
    assert rows[-1]["valid_loss"] != "" and float(rows[-1]["train_loss"]) > 0


def test_list_jobs_filters_by_metadata(client: OpenAI, validated_job: FineTuningJob) -> None:
    found = [j.id for j in client.fine_tuning.jobs.list(metadata={"team": "search"})]
    assert found == [validated_job.id]
    assert list(client.fine_tuning.jobs.list(metadata={"team": "search", "run": "other"})) == []


def test_pause_then_resume_ends_at_the_same_step_count(client: OpenAI) -> None:
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=_upload(client, 40),
        hyperparameters={"n_epochs": 4, "batch_size": 1, "learning_rate_multiplier": 15},
    )

    def trained_some(_: FineTuningJob) -> bool:
        events = client.fine_tuning.jobs.list_events(job.id, limit=3).data
        return any(e.type == "metrics" and e.data["step"] >= 5 for e in events)

    wait_for_job(client, job.id, until=trained_some, timeout_s=600)
    paused = client.fine_tuning.jobs.pause(job.id)
    assert paused.status == "paused"
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.pause(job.id)
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data]
    assert "Fine-tuning job paused" in messages

    resumed = client.fine_tuning.jobs.resume(job.id)
    assert resumed.status == "queued"
    done = wait_for_job(client, job.id)
    assert done.status == "succeeded", done.error
    events = client.fine_tuning.jobs.list_events(job.id, limit=1000).data
    steps = [e.data["step"] for e in reversed(events) if e.type == "metrics"]
    assert steps[-1] == 160 and {e.data["total_steps"] for e in events if e.type == "metrics"} == {160}
    resumed_at = [e.message for e in events if e.message.startswith("Resuming from the checkpoint at step")]
    assert resumed_at, "the second trainer continued from the pause checkpoint"
    step = int(re.findall(r"\d+", resumed_at[0])[0])
    assert 5 <= step < 160 and set(range(1, 161)) <= set(steps)
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.resume(job.id)


def test_delete_a_fine_tuned_model(client: OpenAI, server: Server) -> None:
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=_upload(client, 10), hyperparameters={"n_epochs": 1, "batch_size": 5}
    )
    done = wait_for_job(client, job.id)
    assert done.status == "succeeded" and done.fine_tuned_model
    model = done.fine_tuned_model
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], max_tokens=2)
    adapter_dir = server.data_dir / "jobs" / job.id / "output" / "adapter"
    assert adapter_dir.is_dir()

    deleted = client.models.delete(model)
    assert deleted.deleted and deleted.id == model
    assert model not in [m.id for m in client.models.list()]
    assert not Path(adapter_dir).exists()
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], max_tokens=2)
    assert err.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.models.delete(model)
    with pytest.raises(openai.PermissionDeniedError):
        client.models.delete(BASE_MODEL)
    assert client.fine_tuning.jobs.retrieve(job.id).fine_tuned_model == model  # the job keeps its history


def _preference_file(client: OpenAI, pairs: int) -> str:
    lines = [
        {
            "input": {"messages": [{"role": "user", "content": f"Classify: item {i} arrived."}]},
            "preferred_output": [{"role": "assistant", "content": '{"label": "positive"}'}],
            "non_preferred_output": [{"role": "assistant", "content": "It arrived."}],
        }
        for i in range(pairs)
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    return client.files.create(file=("pairs.jsonl", io.BytesIO(data)), purpose="fine-tune").id


def test_dpo_continues_from_a_fine_tuned_model(client: OpenAI, validated_job: FineTuningJob) -> None:
    sft_model = validated_job.fine_tuned_model or ""
    job = client.fine_tuning.jobs.create(
        model=sft_model,
        training_file=_preference_file(client, 12),
        suffix="dpo",
        method={"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 1, "batch_size": 4}}},
    )
    assert job.model == sft_model and job.method is not None and job.method.type == "dpo"
    done = wait_for_job(client, job.id)
    assert done.status == "succeeded", done.error
    assert done.method is not None and done.method.dpo is not None
    assert done.method.dpo.hyperparameters.beta == 0.1  # "auto" resolved
    assert (done.fine_tuned_model or "").startswith(f"ft:{BASE_MODEL}:default:dpo:")
    events = client.fine_tuning.jobs.list_events(done.id, limit=100).data
    assert sum(e.type == "metrics" for e in events) == 3
    reply = client.chat.completions.create(
        model=done.fine_tuned_model or "",
        messages=[{"role": "user", "content": "Classify: x."}],
        max_tokens=8,
    )
    assert reply.choices[0].message.content is not None


def test_file_format_must_match_the_method(client: OpenAI) -> None:
    chat_file = _upload(client, 12)
    job = client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=chat_file, method={"type": "dpo"})
    done = wait_for_job(client, job.id, timeout_s=60)
    assert done.status == "failed" and done.error is not None
    assert done.error.code == "invalid_training_file" and "chat format" in done.error.message
    job = client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=_preference_file(client, 12))
    done = wait_for_job(client, job.id, timeout_s=60)
    assert done.status == "failed" and done.error is not None and "preference" in done.error.message
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(model="ft:tiny:default::NotMine0", training_file=chat_file)
    assert err.value.code == "model_not_available"
