"""kill -9 the server mid-job, start it again: nothing is lost and the job finishes."""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path

import pytest
from openai import OpenAI

from tests.e2e.conftest import API_KEY, BASE_MODEL
from tests.e2e.jobs import wait_for_job
from tests.e2e.processes import descendants, still_running
from tests.e2e.server import running_server
from tests.e2e.webhook_receiver import Receiver, webhook_receiver
from tests.strict_format import jsonl, training_examples

pytestmark = pytest.mark.e2e


def test_kill_9_mid_job_then_restart(tiny_model: Path, tmp_path: Path) -> None:
    with webhook_receiver(statuses=[500] * 1000) as receiver:  # refusing deliveries until the restart
        _kill_9_mid_job_then_restart(tiny_model, tmp_path, receiver)


def _kill_9_mid_job_then_restart(tiny_model: Path, tmp_path: Path, receiver: Receiver) -> None:
    with running_server(tiny_model, BASE_MODEL, tmp_path, API_KEY) as first:
        client = OpenAI(base_url=f"{first.url}/v1", api_key=API_KEY, max_retries=0)
        data = jsonl(training_examples(40))
        file = client.files.create(file=("train.jsonl", io.BytesIO(data)), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(
            model=BASE_MODEL,
            training_file=file.id,
            hyperparameters={"n_epochs": 4, "batch_size": 1, "learning_rate_multiplier": 15},
        )

        def past_first_epoch(_: object) -> bool:
            return bool(client.fine_tuning.jobs.checkpoints.list(job.id).data)

        wait_for_job(client, job.id, until=past_first_epoch, timeout_s=600)
        events_before = [e.id for e in client.fine_tuning.jobs.list_events(job.id, limit=1000).data]
        # A webhook the receiver refuses when it is first sent: it must outlive the kill.
        endpoint = client.webhooks.create(
            name="restart", url=receiver.url, event_types=["fine_tuning.job.cancelled"]
        )
        other = client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=file.id)
        client.fine_tuning.jobs.cancel(other.id)
        receiver.wait_for(1)
        children = descendants(first.process.pid)
        assert any(" -m trainer " in c for c in children.values()), children
        port = int(first.url.rsplit(":", 1)[1])
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait()

        # The engine (with its engine core and workers) and the trainer die with the server, the
        # trainer after saving a checkpoint, within its stop deadline (60 s).
        deadline = time.monotonic() + 90
        while remaining := still_running(children):
            lines = "\n".join(f"{pid}: {command}" for pid, command in remaining.items())
            assert time.monotonic() < deadline, f"children of the killed server are still running:\n{lines}"
            time.sleep(0.5)

        receiver.statuses.clear()  # from now on it takes deliveries
    # Started again on the same port, so with the same gateway id: it takes its job back at once
    # (another gateway would wait for the job's lease to expire, tests/e2e/test_gateways.py).
    with running_server(tiny_model, BASE_MODEL, tmp_path, API_KEY, port=port) as second:
        client = OpenAI(base_url=f"{second.url}/v1", api_key=API_KEY, max_retries=0)
        assert client.files.content(file.id).read() == data
        done = wait_for_job(client, job.id)
        assert done.status == "succeeded", done.error
        events = client.fine_tuning.jobs.list_events(job.id, limit=1000).data
        assert set(events_before) <= {e.id for e in events}
        messages = [e.message for e in events]
        assert any(
            m.startswith("The server restarted during training; the job continues from checkpoint-")
            for m in messages
        )
        last_steps = next(e.data for e in events if e.type == "metrics")
        assert last_steps["step"] == last_steps["total_steps"] == 160
        reply = client.chat.completions.create(
            model=done.fine_tuned_model or "", messages=[{"role": "user", "content": "x"}], max_tokens=4
        )
        assert reply.choices[0].message.content is not None
        deliveries = receiver.wait_for_status(200)
        assert len({d.headers["webhook-id"] for d in deliveries}) == 1  # the same message, retried
        event = client.webhooks.unwrap(
            deliveries[-1].body, deliveries[-1].headers, secret=endpoint.signing_secret
        )
        assert (event.type, event.data.id) == ("fine_tuning.job.cancelled", other.id)
