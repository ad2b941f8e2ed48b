"""The Uploads API's store (service/uploads.py) on SQLite and PostgreSQL, on a local folder and on S3:
parts joined in the order given into an ordinary file, every refusal a 400 that changes nothing,
the organization's quota counting parts as they arrive, cancellation and expiry removing parts."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import select

from service import uploads as uploads_module
from service.errors import InvalidRequest, NotFound, QuotaExceeded
from service.files import FileStore, StorageQuota
from service.protocol.uploads import CreateUploadRequest, ExpiresAfter
from service.store import Database, UploadPartRow
from service.upload_lifecycle import FORGET_AFTER_S
from service.upload_streams import JoinedReader
from service.uploads import UploadLimits, UploadStore
from trainer import storage

MIB = 2**20
QUOTA_BYTES = 40 * MIB
LIMITS = UploadLimits(max_bytes=30 * MIB, part_max_bytes=6 * MIB, expiry_s=3600)


@pytest.fixture
def uploads(storage_root: str, database_url: str) -> UploadStore:
    db = Database(database_url)
    db.migrate()
    files = FileStore(
        db, storage.join(storage_root, "files"), StorageQuota(max_files=5, max_bytes=QUOTA_BYTES)
    )
    return UploadStore(db, files, storage.join(storage_root, "uploads"), LIMITS)


def _create(uploads: UploadStore, size: int, org: str = "org-a", **fields: Any) -> str:
    request = CreateUploadRequest(
        bytes=size, filename="train.jsonl", mime_type="text/jsonl", purpose="fine-tune"
    )
    return uploads.create(org, request.model_copy(update=fields)).id


def _part(uploads: UploadStore, upload_id: str, data: bytes, org: str = "org-a") -> str:
    return uploads.add_part(org, upload_id, io.BytesIO(data)).id


def _content(uploads: UploadStore, file_id: str) -> bytes:
    return b"".join(uploads.files.read(uploads.files.get("org-a", file_id)))


def _stored_parts(uploads: UploadStore) -> list[str]:
    return storage.children(uploads.blobs)


def test_parts_are_joined_in_the_order_of_part_ids_into_an_ordinary_file(uploads: UploadStore) -> None:
    # Parts of 5 MiB: on S3 the file is a multipart upload of 8 MiB parts, each spanning two of them.
    pieces = [bytes([65 + i]) * (5 * MIB) for i in range(3)] + [b"tail"]
    upload_id = _create(
        uploads, sum(map(len, pieces)), expires_after=ExpiresAfter(anchor="created_at", seconds=7200)
    )
    ids = [_part(uploads, upload_id, piece) for piece in reversed(pieces)]  # sent last part first
    assert all(part_id.startswith("part_") for part_id in ids) and upload_id.startswith("upload_")
    whole = b"".join(pieces)
    done = uploads.complete("org-a", upload_id, ids[::-1], hashlib.md5(whole).hexdigest())
    assert done.status == "completed" and done.file is not None
    file = done.file
    assert (file.bytes, file.filename, file.purpose, file.status) == (
        len(whole),
        "train.jsonl",
        "fine-tune",
        "processed",
    )
    assert file.expires_at == file.created_at + 7200
    assert uploads.files.retrieve("org-a", file.id) == file
    assert _content(uploads, file.id) == whole
    assert _stored_parts(uploads) == []  # the parts' bytes and rows are gone
    with uploads.db.session() as session:
        assert list(session.scalars(select(UploadPartRow))) == []
    with pytest.raises(InvalidRequest, match="is completed"):
        uploads.complete("org-a", upload_id, ids, None)  # completing twice


def test_an_empty_upload_completes_without_parts(uploads: UploadStore) -> None:
    done = uploads.complete("org-a", _create(uploads, 0), [], hashlib.md5(b"").hexdigest())
    assert done.file is not None and done.file.bytes == 0 and _content(uploads, done.file.id) == b""


def _refused(call: Callable[[], object], param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        call()
    assert refused.value.status_code == 400 and refused.value.param == param


def test_a_refused_completion_changes_nothing(uploads: UploadStore) -> None:
    upload_id = _create(uploads, 6)
    first, second = _part(uploads, upload_id, b"abc"), _part(uploads, upload_id, b"def")
    other = _create(uploads, 3)
    foreign = _part(uploads, other, b"xyz")
    complete = uploads.complete
    _refused(lambda: complete("org-a", upload_id, [first], None), "part_ids")  # 3 bytes, not 6
    _refused(lambda: complete("org-a", upload_id, [first, second, foreign], None), "part_ids")  # another's
    _refused(lambda: complete("org-a", upload_id, [first, "part_unknown"], None), "part_ids")
    _refused(lambda: complete("org-a", upload_id, [first, first], None), "part_ids")
    _refused(lambda: complete("org-a", upload_id, [first, second], "not-an-md5"), "md5")
    _refused(lambda: complete("org-a", upload_id, [first, second], hashlib.md5(b"other").hexdigest()), "md5")
    assert storage.children(uploads.files.blobs) == []  # the file assembled for the md5 check is gone
    assert uploads.files.list("org-a", None, 10, "desc", None).data == []
    done = uploads.complete("org-a", upload_id, [second, first], hashlib.md5(b"defabc").hexdigest().upper())
    assert done.file is not None and _content(uploads, done.file.id) == b"defabc"
    assert _stored_parts(uploads) == [other]


def test_a_completion_that_loses_a_race_leaves_no_file(
    uploads: UploadStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload_id = _create(uploads, 3)
    part = _part(uploads, upload_id, b"abc")
    new_row = uploads_module.new_row

    def cancelled_meanwhile(*args: Any) -> Any:
        uploads.cancel("org-a", upload_id)  # between the assembly and the transaction
        return new_row(*args)

    monkeypatch.setattr(uploads_module, "new_row", cancelled_meanwhile)
    _refused(lambda: uploads.complete("org-a", upload_id, [part], None), "upload_id")
    assert storage.children(uploads.files.blobs) == [] and _stored_parts(uploads) == []
    assert uploads.files.list("org-a", None, 10, "desc", None).data == []


def test_of_two_completions_at_once_one_wins(uploads: UploadStore) -> None:
    upload_id = _create(uploads, 3 * MIB)
    part = _part(uploads, upload_id, b"x" * (3 * MIB))

    def complete(_: int) -> str:
        try:
            return uploads.complete("org-a", upload_id, [part], None).status
        except InvalidRequest:
            return "refused"

    with ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(complete, range(2))) == ["completed", "refused"]
    assert len(storage.children(uploads.files.blobs)) == 1  # the loser's assembled copy is gone
    assert len(uploads.files.list("org-a", None, 10, "desc", None).data) == 1


def test_a_part_that_arrives_as_the_upload_is_cancelled_is_not_kept(uploads: UploadStore) -> None:
    upload_id = _create(uploads, 3)

    class CancelsAtTheEnd(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            chunk = super().read(size)
            if not chunk:
                uploads.cancel("org-a", upload_id)
            return chunk

    _refused(lambda: uploads.add_part("org-a", upload_id, CancelsAtTheEnd(b"abc")), "upload_id")
    assert _stored_parts(uploads) == []


def test_another_organizations_upload_is_not_found(uploads: UploadStore) -> None:
    upload_id = _create(uploads, 3)
    part = _part(uploads, upload_id, b"abc")
    for call in (
        lambda: uploads.add_part("org-b", upload_id, io.BytesIO(b"abc")),
        lambda: uploads.complete("org-b", upload_id, [part], None),
        lambda: uploads.cancel("org-b", upload_id),
        lambda: uploads.cancel("org-a", "upload_unknown"),
        lambda: uploads.cancel("org-a", "upload_\x00"),  # not looked up (PostgreSQL refuses a NUL)
    ):
        with pytest.raises(NotFound):
            call()
    assert uploads.complete("org-a", upload_id, [part], None).status == "completed"


def test_cancel_removes_the_parts_and_ends_the_upload(uploads: UploadStore) -> None:
    upload_id = _create(uploads, 6)
    part = _part(uploads, upload_id, b"abc")
    assert _stored_parts(uploads) == [upload_id]
    assert uploads.cancel("org-a", upload_id).status == "cancelled"
    assert _stored_parts(uploads) == []
    _refused(lambda: uploads.add_part("org-a", upload_id, io.BytesIO(b"def")), "upload_id")
    _refused(lambda: uploads.complete("org-a", upload_id, [part], None), "upload_id")
    _refused(lambda: uploads.cancel("org-a", upload_id), "upload_id")


def test_unfinished_uploads_expire_with_their_parts(
    uploads: UploadStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    swept, used = _create(uploads, 6), _create(uploads, 6)
    _part(uploads, swept, b"abc")
    part = _part(uploads, used, b"abc")
    later = time.time() + LIMITS.expiry_s + 1
    monkeypatch.setattr(uploads_module.time, "time", lambda: later)
    with pytest.raises(InvalidRequest, match="is expired"):  # expired on its next use
        uploads.complete("org-a", used, [part], None)
    uploads.files.purge_expired()  # the housekeeping's purge of expired files expires the other one
    assert _stored_parts(uploads) == []
    _refused(lambda: uploads.add_part("org-a", swept, io.BytesIO(b"def")), "upload_id")
    much_later = later + FORGET_AFTER_S
    monkeypatch.setattr(uploads_module.time, "time", lambda: much_later)
    assert uploads.expire_stale() == 0
    with pytest.raises(NotFound):  # its row is forgotten a day later
        uploads.cancel("org-a", swept)


def test_limits_on_parts_and_uploads(uploads: UploadStore) -> None:
    with pytest.raises(InvalidRequest) as refused:
        _create(uploads, LIMITS.max_bytes + 1)
    assert refused.value.param == "bytes" and refused.value.code == "file_too_large"
    upload_id = _create(uploads, 10)
    _refused(lambda: _part(uploads, upload_id, b"x" * (LIMITS.part_max_bytes + 1)), "data")
    assert storage.children(storage.join(uploads.blobs, upload_id)) == []  # nothing kept of it
    _refused(
        lambda: uploads.create("org-a", CreateUploadRequest.model_validate(_bad_expiry())),
        "expires_after.seconds",
    )


def _bad_expiry() -> dict[str, Any]:
    return {
        "bytes": 1,
        "filename": "a",
        "mime_type": "text/jsonl",
        "purpose": "fine-tune",
        "expires_after": {"anchor": "created_at", "seconds": 5},
    }


def test_parts_count_against_the_quota_as_they_arrive(uploads: UploadStore) -> None:
    upload_id, other = _create(uploads, 30 * MIB), _create(uploads, 30 * MIB)
    for _ in range(5):
        _part(uploads, upload_id, b"x" * (6 * MIB))
    with pytest.raises(QuotaExceeded):  # 30 MiB of parts + 11 MiB > 40 MiB
        uploads.files.create("org-a", io.BytesIO(b"y" * (11 * MIB)), "f.jsonl", "fine-tune")
    with pytest.raises(QuotaExceeded):  # declared over what is left: refused at once
        _create(uploads, 11 * MIB)
    _part(uploads, other, b"z" * (6 * MIB))
    with pytest.raises(QuotaExceeded):  # 36 MiB + 6 MiB
        _part(uploads, other, b"z" * (6 * MIB))
    assert sorted(_stored_parts(uploads)) == sorted([upload_id, other])
    assert len(storage.children(storage.join(uploads.blobs, other))) == 1  # nothing of the refused part
    _part(uploads, _create(uploads, 6 * MIB, org="org-b"), b"z" * (6 * MIB), org="org-b")  # others unaffected
    uploads.cancel("org-a", upload_id)
    _part(uploads, other, b"z" * (6 * MIB))  # room again


def test_joined_reader_fills_every_read_until_the_end(tmp_path: Any) -> None:
    locations = []
    for i, data in enumerate([b"ab", b"", b"cdefg", b"h"]):
        path = tmp_path / str(i)
        path.write_bytes(data)
        locations.append(str(path))
    joined = JoinedReader(locations)
    assert [joined.read(3), joined.read(3), joined.read(3), joined.read(3)] == [b"abc", b"def", b"gh", b""]
    assert joined.size == 8 and joined.md5 == hashlib.md5(b"abcdefgh").hexdigest()
