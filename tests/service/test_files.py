"""The file store, on a local folder and on S3: bounded uploads that leave nothing behind on
refusal, safe names, expiry."""

from __future__ import annotations

import io
import time

import pytest

from service import files as files_module
from service.errors import InvalidRequest, NotFound
from service.files import FileStore, parse_expires_after
from service.store import Database
from trainer import storage


@pytest.fixture
def store(storage_root: str, database_url: str) -> FileStore:
    db = Database(database_url)
    db.migrate()
    return FileStore(db, storage.join(storage_root, "files"))


def test_too_large_upload_is_refused_and_leaves_nothing(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past the limit in the second of several S3 parts: the multipart upload is aborted.
    monkeypatch.setattr(files_module, "MAX_FILE_BYTES", 12 * 2**20)
    with pytest.raises(InvalidRequest) as err:
        store.create("org-a", io.BytesIO(b"x" * (20 * 2**20)), "big.jsonl", "fine-tune")
    assert err.value.code == "file_too_large" and err.value.status_code == 400
    assert storage.children(store.blobs) == []
    assert store.list("org-a", None, 100, "desc", None).data == []


def test_stored_name_never_comes_from_the_filename(store: FileStore) -> None:
    made = store.create("org-a", io.BytesIO(b"{}"), "../../etc/passwd", "fine-tune")
    assert made.filename == "passwd"
    assert storage.children(store.blobs) == [made.id]
    assert b"".join(store.read(store.get("org-a", made.id))) == b"{}"


def test_other_organizations_get_404(store: FileStore) -> None:
    made = store.create("org-a", io.BytesIO(b"{}"), "a.jsonl", "fine-tune")
    with pytest.raises(NotFound):
        store.retrieve("org-b", made.id)


def test_unknown_purpose_is_400(store: FileStore) -> None:
    with pytest.raises(InvalidRequest) as err:
        store.create("org-a", io.BytesIO(b"{}"), "a.jsonl", "fine-tune-results")
    assert err.value.param == "purpose"


def test_expired_files_disappear(store: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    made = store.create("org-a", io.BytesIO(b"{}"), "a.jsonl", "batch", expires_after_s=3600)
    assert made.expires_at == made.created_at + 3600
    later = time.time() + 3601
    monkeypatch.setattr(files_module.time, "time", lambda: later)
    assert store.list("org-a", None, 100, "desc", None).data == []
    with pytest.raises(NotFound):
        store.retrieve("org-a", made.id)
    assert not storage.exists(store.location_of(made.id))


def test_expires_after_is_validated() -> None:
    assert parse_expires_after(None, None) is None
    assert parse_expires_after("created_at", 3600) == 3600
    for anchor, seconds in [("created_at", 10), ("created_at", None), ("last_active_at", 3600)]:
        with pytest.raises(InvalidRequest):
            parse_expires_after(anchor, seconds)


def test_list_pages_with_after(store: FileStore) -> None:
    ids = [store.create("org-a", io.BytesIO(b"{}"), f"{i}.jsonl", "fine-tune").id for i in range(5)]
    first = store.list("org-a", None, 2, "asc", None)
    assert first.has_more and first.first_id and first.last_id
    rest = store.list("org-a", None, 10, "asc", first.last_id)
    assert not rest.has_more
    assert sorted([f.id for f in first.data + rest.data]) == sorted(ids)
