"""Polling helpers for end-to-end tests."""

from __future__ import annotations

import time
from collections.abc import Callable

from openai import OpenAI
from openai.types.fine_tuning import FineTuningJob

TERMINAL = {"succeeded", "failed", "cancelled"}


def wait_for_job(
    client: OpenAI,
    job_id: str,
    until: Callable[[FineTuningJob], bool] = lambda job: job.status in TERMINAL,
    timeout_s: float = 900,
    seen: list[str] | None = None,
) -> FineTuningJob:
    """Poll `retrieve` until `until(job)`; records each distinct status in `seen`."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if seen is not None and (not seen or seen[-1] != job.status):
            seen.append(job.status)
        if until(job):
            return job
        if job.status in TERMINAL:  # it will not change any more: say so now, not at the timeout
            raise AssertionError(f"job {job_id} ended {job.status} ({job.error}) before the awaited state")
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job.status} after {timeout_s} s")
        time.sleep(0.2)
