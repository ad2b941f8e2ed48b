"""Several gateways with local trainers on one Postgres database and one S3 bucket (each gateway has
its own data folder), through the stock SDK: what one stores the other serves, each job runs once,
and when the gateway supervising a job is killed (its trainer dies with it) the other adopts the job
once its lease expires and finishes it from its checkpoint in S3. Both gateways use the session
server's engine (by URL), which outlives them. tests/e2e/test_cluster.py is the same with trainers
on Ray."""

from __future__ import annotations

import io
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from openai import OpenAI

from tests.e2e.conftest import API_KEY, BASE_MODEL
from tests.e2e.jobs import wait_for_job
from tests.e2e.processes import descendants
from tests.e2e.server import Server, gateway_pair
from tests.postgres import PostgresServer
from tests.s3_server import S3Server
from tests.strict_format import jsonl, training_examples

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

LEASE_S = 4


def _supervisor_of(job_id: str, gateways: list[Server], timeout_s: float = 300) -> Server:
    """The gateway whose child is the job's trainer."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for gateway in gateways:
            if any(f"/{job_id}/spec.json" in c for c in descendants(gateway.process.pid).values()):
                return gateway
        time.sleep(0.2)
    raise AssertionError(f"no gateway runs a trainer for {job_id}")


def _started(client: OpenAI, job_id: str) -> int:
    events = client.fine_tuning.jobs.list_events(job_id, limit=1000).data
    return sum(e.message == "Fine-tuning job started" for e in events)


def test_two_gateways_share_state_and_adopt_each_others_jobs(
    server: Server, tiny_model: Path, tmp_path: Path, postgres: PostgresServer, s3_server: S3Server
) -> None:
    env = {
        **s3_server.env(),
        "OPENTUNE_STORAGE_URL": s3_server.storage_url(tmp_path.name),
        "OPENTUNE_DATABASE_URL": postgres.new_database(),
        "OPENTUNE_JOB_LEASE_S": str(LEASE_S),
    }
    with gateway_pair(tiny_model, BASE_MODEL, API_KEY, server, tmp_path, env) as (a, b):
        clients = {
            gateway.url: OpenAI(base_url=f"{gateway.url}/v1", api_key=API_KEY, max_retries=0)
            for gateway in (a, b)
        }
        via_a, via_b = clients[a.url], clients[b.url]

        data = jsonl(training_examples(12))
        file = via_a.files.create(file=("shared.jsonl", io.BytesIO(data)), purpose="fine-tune")
        assert via_b.files.content(file.id).read() == data

        # Created at the same moment through both gateways; each gateway runs one job at a time.
        with ThreadPoolExecutor(2) as pool:
            long_job, short_job = pool.map(
                lambda request: request[0].fine_tuning.jobs.create(
                    model=BASE_MODEL, training_file=file.id, hyperparameters=request[1]
                ),
                [
                    (via_a, {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 10}),
                    (via_b, {"n_epochs": 1, "batch_size": 1}),
                ],
            )
        wait_for_job(
            via_b,
            long_job.id,
            until=lambda _: bool(via_b.fine_tuning.jobs.checkpoints.list(long_job.id).data),
        )
        doomed = _supervisor_of(long_job.id, [a, b])
        survivor = b if doomed is a else a
        killed_at = time.time()
        os.kill(doomed.process.pid, signal.SIGKILL)
        doomed.process.wait()

        client = clients[survivor.url]
        done = wait_for_job(client, long_job.id)
        assert done.status == "succeeded", done.error
        events = client.fine_tuning.jobs.list_events(long_job.id, limit=1000).data
        [adopted] = [e for e in events if e.message.startswith("The gateway supervising it stopped")]
        print(f"adopted {adopted.created_at - killed_at:.1f} s after the kill (lease {LEASE_S} s)")  # noqa: T201
        assert adopted.created_at - killed_at < LEASE_S + 30
        last = next(e.data for e in events if e.type == "metrics")
        assert last["step"] == last["total_steps"] == 36
        assert _started(client, long_job.id) == 2  # the first trainer, and the one after adoption
        reply = client.chat.completions.create(
            model=done.fine_tuned_model or "", messages=[{"role": "user", "content": "x"}], max_tokens=4
        )
        assert reply.model == done.fine_tuned_model

        short = wait_for_job(client, short_job.id)
        assert short.status == "succeeded", short.error
        assert _started(client, short_job.id) == 1  # it ran on the other gateway (one job each at a time)
