"""`opentune jobs ...` / `opentune models list` (service/client_cli.py) as a user runs them: the real
command against the shared server, configured as the SDK is (OPENAI_BASE_URL, OPENAI_API_KEY)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from openai import OpenAI

from tests.e2e.conftest import API_KEY, BASE_MODEL
from tests.e2e.server import Server
from tests.strict_format import jsonl, training_examples

pytestmark = pytest.mark.e2e


def opentune(server: Server, *args: str, key: str = API_KEY) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENAI_BASE_URL": f"{server.url}/v1", "OPENAI_API_KEY": key, "COLUMNS": "200"}
    command = [sys.executable, "-m", "service", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)


def test_create_and_follow_a_job_to_success(server: Server, client: OpenAI, tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_bytes(jsonl(training_examples(10)))
    done = opentune(
        server, "jobs", "create", "--file", str(data), "--model", BASE_MODEL, "--epochs", "1", "--follow"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    job_id = last.split()[0]
    job = client.fine_tuning.jobs.retrieve(job_id)
    assert last == f"{job_id} succeeded: {job.fine_tuned_model}"
    assert "The job has successfully completed" in done.stdout  # events are shown as they come

    again = opentune(server, "jobs", "follow", job_id)  # an ended job: its outcome at once
    assert again.returncode == 0 and again.stdout.strip().splitlines()[-1] == last
    listed = opentune(server, "jobs", "list")
    assert listed.returncode == 0 and job_id in listed.stdout
    models = opentune(server, "models", "list")
    assert models.returncode == 0 and {BASE_MODEL, job.fine_tuned_model} <= set(models.stdout.split())


def test_follow_exits_non_zero_for_a_failed_job_and_for_a_bad_key(
    server: Server, client: OpenAI, tmp_path: Path
) -> None:
    data = tmp_path / "short.jsonl"
    data.write_bytes(jsonl(training_examples(2)))  # fewer than the 10 examples a job needs
    created = opentune(server, "jobs", "create", "--file", str(data), "--model", BASE_MODEL, "--follow")
    assert created.returncode == 1, created.stdout + created.stderr
    assert " failed: " in created.stdout.strip().splitlines()[-1]
    refused = opentune(server, "jobs", "list", key="sk-wrong")
    assert refused.returncode == 2 and "401" in refused.stdout + refused.stderr
    assert "sk-wrong" not in refused.stdout + refused.stderr
