"""The whole workflow through the stock openai SDK: upload, fine-tune, chat with the new model."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import openai
import pytest
from openai import OpenAI

from tests.e2e.conftest import BASE_MODEL, Server
from tests.e2e.jobs import wait_for_job
from tests.strict_format import follows_format, held_out_prompts, jsonl, training_examples

pytestmark = pytest.mark.e2e


def _greedy(client: OpenAI, model: str, prompt: str) -> str:
    response = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=24
    )
    assert response.model == model
    return response.choices[0].message.content or ""


def test_fine_tune_then_chat_with_the_adapter(client: OpenAI, server: Server) -> None:
    data = jsonl(training_examples(60))
    uploaded = client.files.create(file=("train.jsonl", io.BytesIO(data)), purpose="fine-tune")
    assert uploaded.status == "processed" and uploaded.bytes == len(data)
    assert client.files.retrieve(uploaded.id).filename == "train.jsonl"
    assert uploaded.id in [f.id for f in client.files.list()]
    assert client.files.content(uploaded.id).read() == data

    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=uploaded.id,
        suffix="fmt",
        seed=42,
        # 60 examples x 3 epochs at batch 1 = 180 steps; LR = 15 x 2e-4 = 3e-3, what a random-init
        # tiny model needs to learn the format within a minute on CPU.
        method={
            "type": "supervised",
            "supervised": {
                "hyperparameters": {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 15}
            },
        },
    )
    assert job.status == "validating_files" and job.seed == 42 and job.user_provided_suffix == "fmt"
    seen: list[str] = []
    done = wait_for_job(client, job.id, seen=seen)
    assert done.status == "succeeded", done.error
    # Every state seen, in order (fast transitions may be missed by polling, never reordered).
    order = ["validating_files", "queued", "running", "succeeded"]
    assert seen == sorted(seen, key=order.index) and seen[-1] == "succeeded"
    assert re.fullmatch(rf"ft:{BASE_MODEL}:default:fmt:[A-Za-z0-9]{{8}}", done.fine_tuned_model or "")
    assert done.hyperparameters.n_epochs == 3 and done.trained_tokens and done.finished_at
    assert done.organization_id == "org-default"

    events = client.fine_tuning.jobs.list_events(done.id, limit=1000).data
    times = [e.created_at for e in events]
    assert times == sorted(times, reverse=True), "events come newest first"
    messages = [e.message for e in reversed(events)]
    assert messages[0] == f"Created fine-tuning job: {done.id}"
    assert messages[-1] == "The job has successfully completed"
    assert "Fine-tuning job started" in messages
    metrics = [e for e in events if e.type == "metrics"]
    assert len(metrics) == 180
    assert metrics[0].data["step"] == 180 and metrics[0].data["total_steps"] == 180
    assert metrics[0].data["train_loss"] < metrics[-1].data["train_loss"]

    model_ids = [m.id for m in client.models.list()]
    assert BASE_MODEL in model_ids and done.fine_tuned_model in model_ids
    ft_model = done.fine_tuned_model
    assert ft_model is not None

    # The adapter changed behaviour in the trained direction, on prompts it was not trained on.
    prompts = held_out_prompts()
    tuned = [_greedy(client, ft_model, p) for p in prompts]
    base = [_greedy(client, BASE_MODEL, p) for p in prompts]
    assert sum(map(follows_format, tuned)) >= len(prompts) - 1, tuned
    assert not any(map(follows_format, base)), base

    stream = client.chat.completions.create(
        model=ft_model,
        messages=[{"role": "user", "content": prompts[0]}],
        temperature=0,
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == tuned[0]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_legacy_hyperparameters_form_and_cancel_before_training(client: OpenAI) -> None:
    uploaded = client.files.create(
        file=("t.jsonl", io.BytesIO(jsonl(training_examples(12)))), purpose="fine-tune"
    )
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=uploaded.id, hyperparameters={"n_epochs": 2, "batch_size": 2}
    )
    assert job.method is not None and job.method.type == "supervised"
    assert job.method.supervised is not None
    assert job.method.supervised.hyperparameters.n_epochs == 2
    assert job.hyperparameters.batch_size == 2
    assert job.hyperparameters.learning_rate_multiplier == "auto"
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    assert any(job.id == j.id for j in client.fine_tuning.jobs.list(limit=100))


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"this is not JSONL at all\nnor is this\n", "invalid_training_file"),
        (
            jsonl([{"messages": [{"role": "user", "content": f"q{i}"}]} for i in range(12)]),
            "invalid_training_file",
        ),
        (jsonl(training_examples(7)), "invalid_n_examples"),
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", "invalid_training_file"),
    ],
    ids=["not-jsonl", "no-assistant", "too-few", "binary"],
)
def test_bad_training_file_fails_the_job_not_the_server(client: OpenAI, content: bytes, code: str) -> None:
    uploaded = client.files.create(file=("bad.jsonl", io.BytesIO(content)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=uploaded.id)
    done = wait_for_job(client, job.id, timeout_s=60)
    assert done.status == "failed"
    assert done.error is not None and done.error.code == code and done.error.param == "training_file"
    assert done.error.message
    errors = [e for e in client.fine_tuning.jobs.list_events(job.id).data if e.level == "error"]
    assert errors and errors[0].message == done.error.message
    assert BASE_MODEL in [m.id for m in client.models.list()]


def test_events_page_with_after(client: OpenAI) -> None:
    uploaded = client.files.create(
        file=("t.jsonl", io.BytesIO(jsonl(training_examples(7)))), purpose="fine-tune"
    )
    job = client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=uploaded.id)
    wait_for_job(client, job.id, timeout_s=60)
    everything = [e.id for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data]
    paged = [e.id for e in client.fine_tuning.jobs.list_events(job.id, limit=2)]  # auto-pagination
    assert paged == everything and len(everything) >= 3


def _trainer_running(job_id: str) -> bool:
    """Whether a `python -m trainer .../<job_id>/spec.json` process exists on this machine."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"-m trainer" in cmdline and f"{job_id}/spec.json".encode() in cmdline:
            return True
    return False


def test_cancel_stops_a_running_trainer(client: OpenAI) -> None:
    uploaded = client.files.create(
        file=("t.jsonl", io.BytesIO(jsonl(training_examples(40)))), purpose="fine-tune"
    )
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=uploaded.id, hyperparameters={"n_epochs": 50, "batch_size": 1}
    )

    def training(j: object) -> bool:
        metrics = client.fine_tuning.jobs.list_events(job.id, limit=5).data
        return any(e.type == "metrics" for e in metrics)

    wait_for_job(client, job.id, until=training, timeout_s=600)
    assert _trainer_running(job.id)
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    deadline = time.monotonic() + 60
    while _trainer_running(job.id):
        assert time.monotonic() < deadline, "the trainer did not exit after cancel"
        time.sleep(0.5)
    time.sleep(1.5)  # the scheduler has seen the exit; the job must stay cancelled
    final = client.fine_tuning.jobs.retrieve(job.id)
    assert final.status == "cancelled" and final.fine_tuned_model is None and final.error is None
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.cancel(job.id)
