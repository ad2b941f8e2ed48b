"""kill -9 a running trainer (as the OOM killer or a lost node would): the job continues from its
latest checkpoint and finishes with the same step count; a trainer that keeps dying fails its job
after OPENTUNE_TRAINER_MAX_RETRIES (2) retries. The shared server, real trainers."""

from __future__ import annotations

import io
import os
import signal
import time

import pytest
from openai import OpenAI

from tests.e2e.jobs import wait_for_job
from tests.e2e.processes import descendants
from tests.e2e.server import Server
from tests.strict_format import jsonl, training_examples

pytestmark = pytest.mark.e2e


def _trainer_of(server: Server, client: OpenAI, job_id: str, timeout_s: float = 300) -> int:
    """The pid of the job's trainer (its command line names the job's spec)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pid, command in descendants(server.process.pid).items():
            if " -m trainer " in command and f"/{job_id}/spec.json" in command:
                return pid
        job = client.fine_tuning.jobs.retrieve(job_id)
        assert job.status in ("validating_files", "queued", "running"), (job.status, job.error)
        time.sleep(0.1)
    raise AssertionError(f"no trainer for {job_id} after {timeout_s} s:\n{server.log_tail()}")


def _messages(client: OpenAI, job_id: str) -> list[str]:
    return [e.message for e in reversed(client.fine_tuning.jobs.list_events(job_id, limit=1000).data)]


def test_a_killed_trainer_resumes_from_its_checkpoint_and_the_job_succeeds(
    client: OpenAI, server: Server
) -> None:
    file = client.files.create(
        file=("faults.jsonl", io.BytesIO(jsonl(training_examples(12)))), purpose="fine-tune"
    )
    job = client.fine_tuning.jobs.create(
        model="tiny",
        training_file=file.id,
        hyperparameters={"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 10},
    )
    wait_for_job(client, job.id, until=lambda _: bool(client.fine_tuning.jobs.checkpoints.list(job.id).data))
    os.kill(_trainer_of(server, client, job.id), signal.SIGKILL)

    done = wait_for_job(client, job.id)
    assert done.status == "succeeded", done.error
    messages = _messages(client, job.id)
    [retry] = [m for m in messages if m.startswith("The trainer stopped unexpectedly")]
    assert retry.startswith("The trainer stopped unexpectedly (signal 9); retrying from step ")
    assert retry.endswith("attempt 2 of 3")
    resumed_from = int(retry.split("retrying from step ")[1].split(",")[0])
    assert resumed_from >= 12  # at least the first epoch's checkpoint
    assert f"Resuming from the checkpoint at step {resumed_from}" in messages
    events = client.fine_tuning.jobs.list_events(job.id, limit=1000).data
    last = next(e.data for e in events if e.type == "metrics")
    assert last["step"] == last["total_steps"] == 36  # 12 examples x 3 epochs, batch size 1
    reply = client.chat.completions.create(
        model=done.fine_tuned_model or "", messages=[{"role": "user", "content": "x"}], max_tokens=4
    )
    assert reply.choices[0].message.content is not None


def test_a_trainer_that_keeps_dying_fails_the_job_after_its_retries(client: OpenAI, server: Server) -> None:
    file = client.files.create(
        file=("dies.jsonl", io.BytesIO(jsonl(training_examples(10)))), purpose="fine-tune"
    )
    job = client.fine_tuning.jobs.create(model="tiny", training_file=file.id, hyperparameters={"n_epochs": 1})
    killed: list[int] = []
    while len(killed) < 3:
        pid = _trainer_of(server, client, job.id)
        if pid in killed:  # the killed one is listed until the gateway reaps it
            time.sleep(0.1)
            continue
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    done = wait_for_job(client, job.id)
    assert done.status == "failed" and done.error is not None
    assert done.error.code == "training_failed"
    assert done.error.message.startswith("The trainer stopped unexpectedly (signal 9), 3 times")
    retries = [m for m in _messages(client, job.id) if "retrying from" in m]
    assert [m.rsplit(", ", 1)[1] for m in retries] == ["attempt 2 of 3", "attempt 3 of 3"]
    for text in (done.error.message, *_messages(client, job.id)):
        assert str(server.data_dir) not in text and "trainer.log" not in text
