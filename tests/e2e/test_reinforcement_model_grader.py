"""A reinforcement job whose grader is a model: the trainer calls the served tiny model through the
server's own chat completions with the job's grader token (from its private spec file), and each
sample's reward is the label the model gave. The token reaches nothing but chat completions, and
stops working once the job has ended."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI

from tests.e2e.conftest import BASE_MODEL
from tests.e2e.jobs import wait_for_job
from tests.e2e.server import Server
from tests.e2e.test_metrics import scrape, value
from tests.rft_job import rows

pytestmark = pytest.mark.e2e

# Structured output holds the tiny random model to one of the labels, and both pass: every sample
# scores exactly 1.0 when (and only when) its grading call succeeded.
LABEL_GRADER = {
    "type": "label_model",
    "name": "polite",
    "model": BASE_MODEL,
    "input": [{"role": "user", "content": "Is this polite? {{sample.output_text}}"}],
    "labels": ["yes", "no"],
    "passing_labels": ["yes", "no"],
}
CHAT = {"route": "/v1/chat/completions", "method": "POST", "status": "200"}


def _grader_token(spec: Path, timeout_s: float = 300) -> str:
    """The token in the job's spec file, once its trainer was started."""
    deadline = time.monotonic() + timeout_s
    while not spec.exists():
        assert time.monotonic() < deadline, "the job's trainer was not started"
        time.sleep(0.2)
    assert spec.stat().st_mode & 0o777 == 0o600
    token: str = json.loads(spec.read_text())["reinforcement"]["model_graders"]["token"]
    return token


def test_a_label_model_grader_rewards_the_samples_of_a_job(client: OpenAI, server: Server) -> None:
    data = "".join(json.dumps(row) + "\n" for row in rows(10, seed=7)).encode()
    training_file = client.files.create(file=("rft-label.jsonl", io.BytesIO(data)), purpose="fine-tune")
    chats_before = value(scrape(server), "opentune_http_requests_total", **CHAT)
    method: Any = {
        "type": "reinforcement",
        "reinforcement": {
            "grader": LABEL_GRADER,
            # One step: 10 prompts, 2 samples each (compute_multiplier 0.5), 20 graded samples.
            "hyperparameters": {"n_epochs": 1, "batch_size": 10, "compute_multiplier": 0.5},
        },
    }
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=training_file.id,
        method=method,
        metadata={"opentune.max_completion_tokens": "4", "opentune.temperature": "0.5"},
        seed=1,
    )
    token = _grader_token(server.data_dir / "jobs" / job.id / "spec.json")
    as_grader = OpenAI(base_url=f"{server.url}/v1", api_key=token, max_retries=0)
    # 403 while the job runs (401 if it ended already): never the organization's files.
    with pytest.raises((openai.PermissionDeniedError, openai.AuthenticationError)):
        as_grader.files.list()

    done = wait_for_job(client, job.id, timeout_s=600)
    assert done.status == "succeeded", done.error
    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    metrics = [e.data for e in reversed(events) if e.type == "metrics"]
    assert [(m["step"], m["train_reward_mean"]) for m in metrics] == [(1, 1.0)]
    assert "The grader scored 20 samples" in [e.message for e in events]
    chats = value(scrape(server), "opentune_http_requests_total", **CHAT) - chats_before
    assert chats >= 20, chats  # the grader's calls, through the server's own chat completions

    with pytest.raises(openai.AuthenticationError):
        as_grader.chat.completions.create(
            model=BASE_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=1
        )
