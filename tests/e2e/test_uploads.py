"""The Uploads API through the stock SDK: `client.uploads.create / parts.create / complete / cancel`
and `upload_file_chunked`; the completed upload is an ordinary file (its content, a training file).

The 300 MB upload runs on a gateway of its own (on the session server's engine): the session server's
stored-bytes quota is 64 MiB per organization, which tests/e2e/test_quotas.py relies on, and a quota
is the same for every organization. The other tests use organizations of their own on the session
server (test_fuzz leaves unfinished uploads in the default one).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai import OpenAI

from tests.e2e.conftest import API_KEY, BASE_MODEL, Server
from tests.e2e.engine_key import engine_api_key
from tests.e2e.jobs import wait_for_job
from tests.e2e.server import running_server
from tests.e2e.test_access import PeakRss
from tests.e2e.test_tenancy import _create_key
from tests.strict_format import jsonl, training_examples

pytestmark = pytest.mark.e2e

logger = logging.getLogger(__name__)  # measurements: pytest --log-cli-level=INFO

MB = 1_000_000
MIB = 2**20
BIG_FILE_BYTES = 300 * MB
PART_BYTES = 64 * MIB  # OpenAI's (and the server's default) largest part
RSS_GROWTH_LIMIT = 100 * MIB


def _client(server: Server, organization: str) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key=_create_key(server, organization), max_retries=0)


@pytest.fixture(scope="module")
def big_gateway(
    server: Server, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A gateway with room for the big file (2 GiB per organization), on the session server's engine."""
    overrides = {
        "OPENTUNE_ENGINE_API_KEY": engine_api_key(server.engine_url),
        "OPENTUNE_MAX_STORED_BYTES_PER_ORG": str(2 * 2**30),
    }
    data_dir = tmp_path_factory.mktemp("uploads-gateway")
    args = ["--engine-url", server.engine_url]
    with running_server(
        tiny_model, BASE_MODEL, data_dir, API_KEY, extra_args=args, env_overrides=overrides
    ) as big:
        yield big


def _write_file(path: Path, size: int) -> str:
    """`size` bytes of JSONL lines (each 1 MB line numbered, so that misplaced bytes show), written
    a line at a time; returns their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for block in range(size // MB):
            head = b'{"block": %09d, "pad": "' % block
            line = head + b"x" * (MB - len(head) - 3) + b'"}\n'
            digest.update(line)
            out.write(line)
    return digest.hexdigest()


def _content_sha256(client: OpenAI, file_id: str) -> str:
    digest = hashlib.sha256()
    with client.files.with_streaming_response.content(file_id) as response:
        for chunk in response.iter_bytes(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def test_a_300_mb_upload_in_parts_with_the_gateway_memory_bounded(
    big_gateway: Server, tmp_path: Path
) -> None:
    client = OpenAI(base_url=f"{big_gateway.url}/v1", api_key=API_KEY, max_retries=0)
    path = tmp_path / "big.jsonl"
    expected = _write_file(path, BIG_FILE_BYTES)
    # A first, small upload through the same routes: what they import and set up on first use is
    # not counted as the big upload's memory.
    small = tmp_path / "small.jsonl"
    small.write_bytes(b'{"a": 1}\n')
    client.uploads.upload_file_chunked(file=small, mime_type="text/jsonl", purpose="fine-tune")

    started = time.monotonic()
    with PeakRss(big_gateway.process.pid) as rss:
        upload = client.uploads.upload_file_chunked(
            file=path, mime_type="text/jsonl", purpose="fine-tune", bytes=BIG_FILE_BYTES, part_size=PART_BYTES
        )
    elapsed = time.monotonic() - started
    growth = rss.growth
    logger.info(
        "300 MB upload: %.1f s, %.0f MB/s; gateway RSS %.0f MiB before, peak growth %.1f MiB",
        elapsed,
        BIG_FILE_BYTES / MB / elapsed,
        rss.before / MIB,
        growth / MIB,
    )
    assert upload.status == "completed" and upload.file is not None
    assert (upload.bytes, upload.filename, upload.purpose) == (BIG_FILE_BYTES, "big.jsonl", "fine-tune")
    assert growth < RSS_GROWTH_LIMIT, f"the gateway grew by {growth / MIB:.0f} MiB during the upload"
    file = client.files.retrieve(upload.file.id)
    assert (file.bytes, file.purpose, file.status) == (BIG_FILE_BYTES, "fine-tune", "processed")
    assert _content_sha256(client, file.id) == expected


def test_a_part_over_64_mib_is_refused(big_gateway: Server) -> None:
    client = OpenAI(base_url=f"{big_gateway.url}/v1", api_key=API_KEY, max_retries=0)
    upload = client.uploads.create(
        bytes=PART_BYTES + 1, filename="a.jsonl", mime_type="text/jsonl", purpose="batch"
    )
    with pytest.raises(openai.BadRequestError) as refused:  # within the body cap, over the part cap
        client.uploads.parts.create(upload.id, data=b"x" * (PART_BYTES + 1))
    assert refused.value.param == "data"
    with pytest.raises(openai.APIStatusError) as too_large:  # past the body cap: refused as it streams
        client.uploads.parts.create(upload.id, data=b"x" * (PART_BYTES + 2 * MIB))
    assert too_large.value.status_code == 413
    assert client.uploads.cancel(upload.id).status == "cancelled"


@pytest.fixture(scope="module")
def org(server: Server) -> OpenAI:
    return _client(server, "uploads-a")


def test_parts_sent_out_of_order_are_joined_as_part_ids_say(org: OpenAI) -> None:
    pieces = [jsonl(training_examples(5, seed=1)), jsonl(training_examples(5, seed=2))]
    whole = b"".join(pieces)
    upload = org.uploads.create(
        bytes=len(whole), filename="train.jsonl", mime_type="text/jsonl", purpose="fine-tune"
    )
    assert (upload.status, upload.object, upload.file) == ("pending", "upload", None)
    assert upload.expires_at == upload.created_at + 3600
    second = org.uploads.parts.create(upload.id, data=pieces[1])
    first = org.uploads.parts.create(upload.id, data=pieces[0])
    assert (first.object, first.upload_id) == ("upload.part", upload.id)
    done = org.uploads.complete(upload.id, part_ids=[first.id, second.id], md5=hashlib.md5(whole).hexdigest())
    assert done.status == "completed" and done.file is not None
    assert org.files.content(done.file.id).content == whole
    with pytest.raises(openai.BadRequestError):  # completing twice
        org.uploads.complete(upload.id, part_ids=[first.id, second.id])
    # An ordinary file: a training file that passes validation.
    job = org.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=done.file.id, hyperparameters={"n_epochs": 1, "batch_size": 5}
    )
    validated = wait_for_job(org, job.id, until=lambda j: j.status in ("queued", "running"), timeout_s=300)
    assert validated.training_file == done.file.id
    org.fine_tuning.jobs.cancel(job.id)


def test_refusals_are_400s_that_leave_the_upload_pending(org: OpenAI) -> None:
    upload = org.uploads.create(bytes=6, filename="a.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    part = org.uploads.parts.create(upload.id, data=b"abc").id
    other = org.uploads.create(bytes=3, filename="b.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    foreign = org.uploads.parts.create(other.id, data=b"def").id
    for part_ids, md5, param in [
        ([part], None, "part_ids"),  # 3 bytes of 6
        ([part, foreign], None, "part_ids"),  # another upload's part
        ([part, "part_unknown"], None, "part_ids"),
        ([part, part], hashlib.md5(b"abcabc").hexdigest(), "part_ids"),
        ([part], "0" * 32, "part_ids"),
    ]:
        with pytest.raises(openai.BadRequestError) as refused:
            org.uploads.complete(upload.id, part_ids=part_ids, md5=md5 or openai.omit)
        assert refused.value.param == param
    second = org.uploads.parts.create(upload.id, data=b"def").id
    with pytest.raises(openai.BadRequestError) as refused:
        org.uploads.complete(upload.id, part_ids=[part, second], md5=hashlib.md5(b"wrong").hexdigest())
    assert refused.value.param == "md5"
    assert org.uploads.complete(upload.id, part_ids=[part, second]).status == "completed"
    for fields in ({"purpose": "fine-tune-results"}, {"bytes": 8 * 2**30 + 1}, {"bytes": -1}):
        request = {"bytes": 1, "filename": "a", "mime_type": "text/jsonl", "purpose": "batch", **fields}
        with pytest.raises(openai.BadRequestError):
            org.uploads.create(**request)
    org.uploads.cancel(other.id)


def test_cancel_ends_the_upload(org: OpenAI) -> None:
    upload = org.uploads.create(bytes=3, filename="a.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    part = org.uploads.parts.create(upload.id, data=b"abc")
    cancelled = org.uploads.cancel(upload.id)
    assert (cancelled.id, cancelled.status) == (upload.id, "cancelled")
    with pytest.raises(openai.BadRequestError):
        org.uploads.parts.create(upload.id, data=b"abc")
    with pytest.raises(openai.BadRequestError):
        org.uploads.complete(upload.id, part_ids=[part.id])
    with pytest.raises(openai.BadRequestError):
        org.uploads.cancel(upload.id)


def test_another_organizations_upload_is_not_found(server: Server, org: OpenAI) -> None:
    upload = org.uploads.create(bytes=3, filename="a.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    part = org.uploads.parts.create(upload.id, data=b"abc")
    other = _client(server, "uploads-b")
    for call in (
        lambda: other.uploads.parts.create(upload.id, data=b"abc"),
        lambda: other.uploads.complete(upload.id, part_ids=[part.id]),
        lambda: other.uploads.cancel(upload.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert org.uploads.complete(upload.id, part_ids=[part.id]).status == "completed"
