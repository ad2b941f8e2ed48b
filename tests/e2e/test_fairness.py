"""Fair scheduling through the stock SDK: an organization with 20 queued jobs delays another's
single job by at most one job (issue 9). The server runs one trainer at a time."""

from __future__ import annotations

import io
import time

import pytest
from openai import OpenAI

from tests.e2e.conftest import BASE_MODEL, Server
from tests.e2e.jobs import TERMINAL, wait_for_job
from tests.e2e.test_tenancy import _create_key
from tests.strict_format import jsonl, training_examples

pytestmark = pytest.mark.e2e

STARTED = {"running", "succeeded", "failed"}


def test_a_busy_organization_delays_another_by_at_most_one_job(server: Server) -> None:
    busy = OpenAI(base_url=f"{server.url}/v1", api_key=_create_key(server, "fair-busy"), max_retries=0)
    single = OpenAI(base_url=f"{server.url}/v1", api_key=_create_key(server, "fair-single"), max_retries=0)
    # One step per job: what is measured is the order, not the training.
    tiny = {"n_epochs": 1, "batch_size": 10}
    data = io.BytesIO(jsonl(training_examples(10)))
    busy_file = busy.files.create(file=("busy.jsonl", data), purpose="fine-tune")
    busy_jobs = [
        busy.fine_tuning.jobs.create(model=BASE_MODEL, training_file=busy_file.id, hyperparameters=tiny).id
        for _ in range(20)
    ]
    single_file = single.files.create(
        file=("single.jsonl", io.BytesIO(jsonl(training_examples(10, seed=1)))), purpose="fine-tune"
    )
    single_job = single.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=single_file.id, hyperparameters=tiny
    ).id
    try:
        # While the single job runs, no other job can start (one trainer at a time): how many of the
        # busy organization's jobs started before it is then fixed.
        deadline = time.monotonic() + 600
        while (job := single.fine_tuning.jobs.retrieve(single_job)).status not in STARTED:
            assert time.monotonic() < deadline, f"the single job is still {job.status}"
            time.sleep(0.1)
        busy_started = [j.id for j in busy.fine_tuning.jobs.list(limit=100) if j.status in STARTED]
        assert job.status == "running", (job.status, job.error)
        assert len(busy_started) <= 1, f"{len(busy_started)} of the busy organization's jobs went first"
        assert wait_for_job(single, single_job).status == "succeeded"
    finally:
        for job_id in busy_jobs:
            if busy.fine_tuning.jobs.retrieve(job_id).status not in TERMINAL:
                busy.fine_tuning.jobs.cancel(job_id)
