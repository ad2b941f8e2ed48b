"""The uploads router through the stock SDK (`client.uploads`), in process: the wire shapes, and
refusals as the SDK's exceptions. The 300 MB upload and the real server: tests/e2e/test_uploads.py."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from openai import OpenAI

from service import api
from service.auth import Principal
from service.deps import Components, components, principal
from service.errors import install_error_handlers
from service.files import FileStore
from service.store import Database
from service.uploads import UploadLimits, UploadStore


def _org_from_key(request: Request) -> Principal:
    # The organization is the API key itself here (authentication is tested elsewhere).
    return Principal(request.headers["authorization"].removeprefix("Bearer "))


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate()
    files = FileStore(db, str(tmp_path / "files"))
    uploads = UploadStore(db, files, str(tmp_path / "uploads"), UploadLimits(10_000, 1000, 3600))
    unused: Any = None  # the files and uploads routers touch nothing else
    parts = Components(
        **{name: unused for name in Components.__dataclass_fields__} | {"files": files, "uploads": uploads}
    )
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(api.files.router, prefix="/v1")
    app.include_router(api.uploads.router, prefix="/v1")
    app.dependency_overrides[components] = lambda: parts
    app.dependency_overrides[principal] = _org_from_key
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[OpenAI]:
    with TestClient(app, base_url="http://gateway") as http:
        yield OpenAI(base_url="http://gateway/v1", api_key="org-a", http_client=http, max_retries=0)


def test_upload_file_chunked_makes_an_ordinary_file(client: OpenAI) -> None:
    data = bytes(range(256)) * 10  # 2,560 bytes: 3 parts of at most 1,000
    md5 = hashlib.md5(data).hexdigest()
    upload = client.uploads.upload_file_chunked(
        file=data,
        filename="d.jsonl",
        bytes=len(data),
        mime_type="text/jsonl",
        purpose="batch",
        part_size=1000,
        md5=md5,
    )
    assert (upload.object, upload.status, upload.bytes, upload.filename) == (
        "upload",
        "completed",
        2560,
        "d.jsonl",
    )
    assert upload.id.startswith("upload_") and upload.file is not None
    assert upload.file.id.startswith("file-") and upload.file.bytes == len(data)
    assert client.files.retrieve(upload.file.id) == upload.file
    assert client.files.content(upload.file.id).content == data


def test_parts_cancel_and_refusals(client: OpenAI, app: FastAPI) -> None:
    upload = client.uploads.create(bytes=6, filename="a.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    assert upload.status == "pending" and upload.expires_at == upload.created_at + 3600
    part = client.uploads.parts.create(upload.id, data=b"abc")
    assert (part.object, part.upload_id) == ("upload.part", upload.id) and part.id.startswith("part_")
    with pytest.raises(openai.BadRequestError) as refused:
        client.uploads.complete(upload.id, part_ids=[part.id])
    assert refused.value.param == "part_ids" and refused.value.body is not None
    with pytest.raises(openai.BadRequestError) as refused:
        client.uploads.parts.create(upload.id, data=b"x" * 1001)  # over the part size
    assert refused.value.param == "data"
    other = OpenAI(base_url="http://gateway/v1", api_key="org-b", http_client=client._client, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.uploads.cancel(upload.id)
    assert client.uploads.cancel(upload.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        client.uploads.parts.create(upload.id, data=b"def")
    with pytest.raises(openai.BadRequestError) as refused:  # a part sent as JSON, not multipart
        client.post(f"/uploads/{upload.id}/parts", body={"data": "abc"}, cast_to=object)
    with pytest.raises(openai.BadRequestError) as refused:
        client.uploads.create(bytes=1, filename="a", mime_type="text/plain", purpose="fine-tune-results")  # type: ignore[arg-type]
    assert refused.value.param == "purpose"
