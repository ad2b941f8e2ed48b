"""Per-organization storage quota in FileStore.create: file count and bytes, counted with the
upload in progress; a refused upload leaves nothing behind."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from service.errors import QuotaExceeded
from service.files import FileStore, StorageQuota
from service.store import Database
from trainer import storage


@pytest.fixture
def store(tmp_path: Path, database_url: str) -> FileStore:
    db = Database(database_url)
    db.migrate()
    return FileStore(db, str(tmp_path / "blobs"), quota=StorageQuota(max_files=3, max_bytes=1000))


def _upload(store: FileStore, org: str, size: int) -> str:
    return store.create(org, io.BytesIO(b"x" * size), "f.jsonl", "fine-tune").id


def test_file_count_is_capped_per_organization(store: FileStore) -> None:
    ids = [_upload(store, "org-a", 10) for _ in range(3)]
    with pytest.raises(QuotaExceeded) as refused:
        _upload(store, "org-a", 10)
    assert refused.value.status_code == 429 and refused.value.code == "quota_exceeded"
    assert refused.value.headers == {"x-should-retry": "false"}  # waiting does not help
    _upload(store, "org-b", 10)
    store.delete("org-a", ids[0])
    _upload(store, "org-a", 10)


def test_bytes_count_what_is_stored_and_what_is_being_uploaded(store: FileStore) -> None:
    _upload(store, "org-a", 600)
    with pytest.raises(QuotaExceeded):
        _upload(store, "org-a", 401)  # 1,001 with the file already stored
    assert len(store.list("org-a", None, 100, "desc", None).data) == 1
    assert storage.children(store.blobs) == [store.list("org-a", None, 1, "desc", None).data[0].id]
    _upload(store, "org-a", 400)  # exactly 1,000
    _upload(store, "org-b", 1000)


def test_files_the_server_writes_are_never_refused(store: FileStore, tmp_path: Path) -> None:
    _upload(store, "org-a", 1000)
    result = tmp_path / "result.csv"
    result.write_text("step,train_loss\n")
    store.create_from("org-a", str(result), "result.csv", "fine-tune-results")
