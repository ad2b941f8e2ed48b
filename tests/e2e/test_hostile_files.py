"""One organization's hostile training files fail only its own jobs, with invalid_training_file,
while another organization's job trains and succeeds on the same server (issue 9)."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from openai import OpenAI

from tests.e2e.conftest import BASE_MODEL, Server
from tests.e2e.jobs import wait_for_job
from tests.strict_format import jsonl, training_examples

pytestmark = pytest.mark.e2e

_GOOD_LINE = json.dumps(training_examples(1)[0]).encode()


def _client(server: Server, organization: str) -> OpenAI:
    command = [sys.executable, "-m", "service", "keys", "create", "--org", organization]
    done = subprocess.run(
        [*command, "--data-dir", str(server.data_dir)], capture_output=True, text=True, check=True
    )
    return OpenAI(base_url=f"{server.url}/v1", api_key=done.stdout.strip(), max_retries=0)


def _lines(*records: object, count: int = 10) -> bytes:
    return b"".join(json.dumps(record).encode() + b"\n" for record in records) * count


_UNTERMINATED_50_MB = b'{"messages": [{"role": "user", "content": "' + b"a" * (50 * 2**20)
_INVALID_UTF8 = _GOOD_LINE.replace(b"Classify", b"Class\xff\xfeify")

HOSTILE_FILES: dict[str, bytes] = {
    "list-roles": _lines({"messages": [{"role": [], "content": "x"}]}),
    "object-roles": _lines({"messages": [{"role": {"name": "user"}, "content": "x"}]}),
    "number-contents": _lines({"messages": [{"role": "user", "content": 5}, {"role": "assistant"}]}),
    "deep-nesting": _GOOD_LINE + b"\n" + b"[" * 100_000 + b"\n",
    "50mb-line": _GOOD_LINE + b"\n" + _UNTERMINATED_50_MB + b"\n",
    "invalid-utf8": (_GOOD_LINE + b"\n") * 5 + _INVALID_UTF8 + b"\n" + (_GOOD_LINE + b"\n") * 10,
}  # fmt: skip


def test_hostile_files_fail_only_their_own_jobs(server: Server) -> None:
    mallory, honest = _client(server, "mallory"), _client(server, "honest")
    hostile_jobs = {}
    for name, content in HOSTILE_FILES.items():
        file = mallory.files.create(file=(f"{name}.jsonl", io.BytesIO(content)), purpose="fine-tune")
        job = mallory.fine_tuning.jobs.create(
            model=BASE_MODEL, training_file=file.id, hyperparameters={"n_epochs": 1}
        )
        hostile_jobs[name] = job.id

    data = honest.files.create(
        file=("good.jsonl", io.BytesIO(jsonl(training_examples(10)))), purpose="fine-tune"
    )
    good = honest.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=data.id, hyperparameters={"n_epochs": 1, "batch_size": 5}
    )

    for name, job_id in hostile_jobs.items():
        failed = wait_for_job(mallory, job_id, timeout_s=300)
        assert failed.status == "failed", (name, failed.status)
        assert failed.error is not None and failed.error.code == "invalid_training_file", (name, failed.error)
        assert str(server.data_dir) not in (failed.error.message or ""), name
        assert "Example" in (failed.error.message or ""), (name, failed.error.message)

    done = wait_for_job(honest, good.id)
    assert done.status == "succeeded", done.error
    messages = [event.message for event in honest.fine_tuning.jobs.list_events(good.id, limit=100).data]
    assert "Tokenized training data found in the cache" not in messages
