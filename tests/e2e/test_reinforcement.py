"""Reinforcement fine-tuning through OpenAI's SDK: a job with a python grader on the tiny model
raises its mean reward (the calibrated job of tests/rft_job.py: the one run of it in the suite),
reports train and validation rewards in its metrics events and its result file, echoes its
method, and serves its model; a grader that names a field the rows lack fails the job in
validating_files; graders training cannot use (a model it cannot call, python that does not
compile) are 400s."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import openai
import pytest
from openai import OpenAI

from tests.e2e.conftest import BASE_MODEL
from tests.e2e.jobs import wait_for_job
from tests.rft_job import DIGITS_GRADER, first_and_last, rows

pytestmark = pytest.mark.e2e

MIN_MARGIN = 0.3  # calibrated: margins 0.70-0.96 over seeds 1-5 (bench/rft_reward.py)
SAMPLING = {"opentune.max_completion_tokens": "8", "opentune.temperature": "0.5"}


def _upload(client: OpenAI, data: list[dict[str, Any]], name: str) -> str:
    body = "".join(json.dumps(row) + "\n" for row in data).encode()
    return client.files.create(file=(name, io.BytesIO(body)), purpose="fine-tune").id


def _method(grader: dict[str, Any], **hyperparameters: Any) -> Any:
    return {"type": "reinforcement", "reinforcement": {"grader": grader, "hyperparameters": hyperparameters}}


def test_a_reinforcement_job_raises_its_reward(client: OpenAI) -> None:
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=_upload(client, rows(32, seed=3), "rft-train.jsonl"),
        validation_file=_upload(client, rows(4, seed=4), "rft-valid.jsonl"),
        # tests/rft_job.py's calibrated job: 8 samples per prompt (compute_multiplier 2), 40 steps at 1e-2.
        method=_method(
            DIGITS_GRADER,
            n_epochs=5,
            batch_size=4,
            learning_rate_multiplier=50,
            compute_multiplier=2,
            eval_interval=8,
            eval_samples=2,
        ),
        metadata=SAMPLING,
        seed=1,
    )
    done = wait_for_job(client, job.id, timeout_s=900)
    assert done.status == "succeeded", done.error
    assert done.method.type == "reinforcement" and done.method.reinforcement is not None
    assert done.method.reinforcement.grader.model_dump(exclude_none=True)["source"] == DIGITS_GRADER["source"]
    metrics = [
        e.data for e in client.fine_tuning.jobs.list_events(job.id, limit=1000).data if e.type == "metrics"
    ]
    metrics.reverse()  # oldest first
    assert [m["step"] for m in metrics] == list(range(1, 41))  # 32 prompts / 4 per step x 5 epochs
    rewards = [m["train_reward_mean"] for m in metrics]
    assert all(0.0 <= r <= 1.0 for r in rewards)
    first, last = first_and_last(rewards)
    assert last - first >= MIN_MARGIN, rewards
    # Validation every 8 steps (eval_interval), which is also the last step.
    valid = {m["step"]: m["valid_reward_mean"] for m in metrics if "valid_reward_mean" in m}
    assert sorted(valid) == [8, 16, 24, 32, 40]
    assert valid[40] > first + MIN_MARGIN, valid
    table = list(csv.DictReader(io.StringIO(client.files.content(done.result_files[0]).text)))
    assert [float(row["train_reward_mean"]) for row in table] == rewards
    # 40 steps of 4 prompts x 8 samples, and 5 evaluations of 4 prompts x 2 samples.
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=1000).data]
    assert "The grader scored 1320 samples" in messages
    reply = client.chat.completions.create(
        model=done.fine_tuned_model or "", messages=[{"role": "user", "content": "Count them."}], max_tokens=8
    )
    assert reply.choices[0].message.content is not None


def test_a_grader_the_rows_cannot_feed_fails_the_job_in_validation(client: OpenAI) -> None:
    grader = {
        "type": "string_check",
        "name": "exact",
        "input": "{{sample.output_text}}",
        "reference": "{{item.solution}}",
        "operation": "eq",
    }
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=_upload(client, rows(12, seed=5), "rft-bad.jsonl"),
        method=_method(grader),
    )
    failed = wait_for_job(client, job.id, timeout_s=300)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.param == "training_file" and "item.solution" in failed.error.message


def test_graders_training_cannot_use_are_refused(client: OpenAI) -> None:
    training_file = _upload(client, rows(12, seed=6), "rft-refused.jsonl")
    judge = {  # a model the organization cannot use (a usable one: test_reinforcement_model_grader.py)
        "type": "score_model",
        "name": "judge",
        "model": "gpt-4o",
        "input": [{"role": "user", "content": "x"}],
    }
    for grader in (judge, {**DIGITS_GRADER, "source": "def grade(sample, item):\n    return ("}):
        with pytest.raises(openai.BadRequestError) as refused:
            client.fine_tuning.jobs.create(
                model=BASE_MODEL, training_file=training_file, method=_method(grader)
            )
        assert str(refused.value.param).startswith("method.reinforcement.grader"), refused.value
