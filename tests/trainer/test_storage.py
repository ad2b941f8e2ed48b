"""trainer/storage.py on each kind of location: a local folder, and a prefix in a real S3 server
(`rclone serve s3`, tests/s3_server.py), through the `storage_root` fixture (tests/conftest.py)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest

from tests.s3_server import S3Server
from trainer import storage

MB = 1024 * 1024


class Refused(Exception):
    """What a reader raises midway (the gateway's size limit, a client gone)."""


class RefusingReader:
    """Reads `data`, then raises once `limit` bytes have been read."""

    def __init__(self, data: bytes, limit: int) -> None:
        self._stream = io.BytesIO(data)
        self._limit = limit
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._stream.read(size)
        self.read_bytes += len(chunk)
        if self.read_bytes > self._limit:
            raise Refused(f"over {self._limit} bytes")
        return chunk


def _server(request: pytest.FixtureRequest, root: str) -> S3Server | None:
    return request.getfixturevalue("s3_server") if storage.is_remote(root) else None


def _read(location: str) -> bytes:
    return b"".join(storage.iter_bytes(location))


def _write(location: str, data: bytes) -> None:
    storage.write_stream(location, io.BytesIO(data))


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, by its relative path."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _pending_uploads(server: S3Server, location: str) -> list[Any]:
    """The multipart uploads begun at `location` and neither completed nor aborted."""
    bucket, _, key = location.removeprefix("s3://").partition("/")
    client = server.client()
    try:
        return list(client.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", []))
    except client.exceptions.NoSuchUpload:
        # `rclone serve s3` answers this until a first multipart upload was begun on the server
        # (S3 answers an empty list): then none is pending.
        return []


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A local folder to copy: nested files, one of them the `last` mark."""
    source = tmp_path / "source"
    (source / "sub" / "deeper").mkdir(parents=True)
    (source / "a.bin").write_bytes(os.urandom(1000))
    (source / "trainer_state.json").write_text('{"global_step": 3}')
    (source / "optimizer.pt").write_bytes(b"optimizer")
    (source / "sub" / "b.txt").write_text("b")
    (source / "sub" / "optimizer.pt").write_bytes(b"nested optimizer")
    (source / "sub" / "deeper" / "c.txt").write_text("c")
    (source / "z-empty").write_bytes(b"")
    return source


def test_join_and_is_remote() -> None:
    assert storage.join("s3://bucket/root/", "files", "file-1") == "s3://bucket/root/files/file-1"
    assert storage.join("s3://bucket", "files") == "s3://bucket/files"
    assert storage.join("/data", "files", "file-1") == str(Path("/data/files/file-1"))
    assert storage.is_remote("s3://bucket/key")
    assert not storage.is_remote("/data/s3:/x")


@pytest.mark.parametrize("size", [0, 1, MB + 3, 20 * MB + 5], ids=["empty", "1B", "1MB", "20MB"])
def test_write_stream_then_iter_bytes_gives_the_same_bytes(storage_root: str, size: int) -> None:
    data = os.urandom(size)
    location = storage.join(storage_root, "files", "file-1")
    _write(location, data)
    assert storage.exists(location)
    chunks = list(storage.iter_bytes(location))
    assert b"".join(chunks) == data
    assert all(len(chunk) <= 1 * MB for chunk in chunks)  # streamed, never all at once


def test_write_stream_replaces_a_file(storage_root: str) -> None:
    location = storage.join(storage_root, "spec.json")
    _write(location, b"first, longer version")
    _write(location, b"second")
    assert _read(location) == b"second"


@pytest.mark.parametrize("limit", [MB, 20 * MB], ids=["before-multipart", "during-multipart"])
def test_a_reader_that_raises_leaves_nothing(
    request: pytest.FixtureRequest, storage_root: str, limit: int
) -> None:
    location = storage.join(storage_root, "files", "file-1")
    reader = RefusingReader(os.urandom(24 * MB), limit)
    with pytest.raises(Refused):  # the reader's own exception, not a wrapped one
        storage.write_stream(location, reader)
    # boto3 reads a first 8 MB (its multipart threshold) before it starts an upload: at 1 MB the
    # reader raises before any request, at 20 MB after parts were sent.
    assert reader.read_bytes > limit
    assert not storage.exists(location)
    assert storage.children(storage.join(storage_root, "files")) == []  # no partial file either
    server = _server(request, storage_root)
    if server is not None:
        # `rclone serve s3` lists multipart uploads: the one cut short was aborted.
        assert _pending_uploads(server, location) == []


def test_a_reader_that_raises_leaves_the_previous_file(storage_root: str) -> None:
    location = storage.join(storage_root, "files", "file-1")
    _write(location, b"previous")
    with pytest.raises(Refused):
        storage.write_stream(location, RefusingReader(os.urandom(12 * MB), 10 * MB))
    assert _read(location) == b"previous"


def test_exists(storage_root: str) -> None:
    checkpoint = storage.join(storage_root, "job", "checkpoints", "checkpoint-1")
    _write(storage.join(checkpoint, "trainer_state.json"), b"{}")
    assert storage.exists(storage.join(checkpoint, "trainer_state.json"))
    assert storage.exists(checkpoint)  # a folder
    assert storage.exists(storage.join(storage_root, "job"))
    assert not storage.exists(storage.join(storage_root, "job", "checkpoints", "checkpoint-2"))
    assert not storage.exists(storage.join(storage_root, "jo"))  # a prefix of a name is not a name
    assert not storage.exists(storage.join(storage_root, "missing", "file"))


def test_children(storage_root: str) -> None:
    checkpoints = storage.join(storage_root, "checkpoints")
    assert storage.children(checkpoints) == []  # nothing there yet
    for name in ["checkpoint-10", "checkpoint-2"]:
        _write(storage.join(checkpoints, name, "adapter_model.safetensors"), b"w")
        _write(storage.join(checkpoints, name, "sub", "x"), b"x")
    _write(storage.join(checkpoints, "metrics.csv"), b"step,loss\n")
    _write(storage.join(storage_root, "checkpoints-other", "file"), b"not inside")
    assert storage.children(checkpoints) == ["checkpoint-10", "checkpoint-2", "metrics.csv"]
    inside = ["adapter_model.safetensors", "sub"]
    assert storage.children(storage.join(checkpoints, "checkpoint-2")) == inside
    assert storage.children(storage.join(checkpoints, "checkpoint-2/")) == inside


def test_put_and_fetch_a_file(storage_root: str, tmp_path: Path) -> None:
    source = tmp_path / "metrics.csv"
    source.write_bytes(b"step,loss\n1,0.5\n")
    location = storage.join(storage_root, "output", "metrics.csv")  # its folder is made as needed
    storage.put(source, location)
    assert _read(location) == source.read_bytes()
    destination = storage.fetch(location, tmp_path / "copies" / "metrics.csv")
    assert destination == tmp_path / "copies" / "metrics.csv"
    assert destination.read_bytes() == source.read_bytes()


def test_put_a_folder_then_fetch_it(storage_root: str, folder: Path, tmp_path: Path) -> None:
    location = storage.join(storage_root, "checkpoints", "checkpoint-3")
    storage.put(folder, location, last="trainer_state.json")
    assert storage.children(location) == sorted(p.name for p in folder.iterdir())
    fetched = storage.fetch(location, tmp_path / "fetched" / "checkpoint-3")
    assert _tree(fetched) == _tree(folder)
    # Into a folder that exists already: merged, on both kinds of storage.
    assert _tree(storage.fetch(location, fetched)) == _tree(folder)


def test_put_a_folder_copies_the_last_file_after_every_other(
    s3_env: S3Server, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What makes a stored checkpoint's trainer_state.json mean "complete" (trainer/staging.py)."""
    client = storage._s3()
    uploaded: list[str] = []
    upload_file = client.upload_file

    def recording(filename: str, bucket: str, key: str, **kwargs: Any) -> None:
        upload_file(filename, bucket, key, **kwargs)
        uploaded.append(key)

    monkeypatch.setattr(client, "upload_file", recording)
    location = s3_env.storage_url(f"{tmp_path.name}/checkpoint-3")
    storage.put(folder, location, last="trainer_state.json")
    prefix = location.removeprefix(f"s3://{s3_env.bucket}/") + "/"
    assert sorted(uploaded) == sorted(prefix + name for name in _tree(folder))
    assert uploaded[-1] == prefix + "trainer_state.json"


def test_fetch_a_folder_without_the_skipped_files(storage_root: str, folder: Path, tmp_path: Path) -> None:
    location = storage.join(storage_root, "adapter")
    storage.put(folder, location)
    skip = frozenset({"optimizer.pt", "not-there"})
    fetched = storage.fetch(location, tmp_path / "cache" / "adapter", skip=skip)
    expected = {name: data for name, data in _tree(folder).items() if not name.endswith("optimizer.pt")}
    assert _tree(fetched) == expected


def test_remove_a_file(storage_root: str) -> None:
    kept = storage.join(storage_root, "files", "file-1")
    removed = storage.join(storage_root, "files", "file-2")
    _write(kept, b"1")
    _write(removed, b"2")
    storage.remove(removed)
    assert not storage.exists(removed)
    assert storage.exists(kept)
    assert storage.children(storage.join(storage_root, "files")) == ["file-1"]
    storage.remove(removed)  # nothing there is fine
    storage.remove(storage.join(storage_root, "never", "there"))


def test_remove_a_folder(storage_root: str, folder: Path) -> None:
    checkpoints = storage.join(storage_root, "checkpoints")
    storage.put(folder, storage.join(checkpoints, "checkpoint-1"))
    storage.put(folder, storage.join(checkpoints, "checkpoint-10"))  # a name the removed one prefixes
    storage.remove(storage.join(checkpoints, "checkpoint-1"))
    assert not storage.exists(storage.join(checkpoints, "checkpoint-1"))
    assert not storage.exists(storage.join(checkpoints, "checkpoint-1", "trainer_state.json"))
    assert storage.children(checkpoints) == ["checkpoint-10"]
    assert storage.exists(storage.join(checkpoints, "checkpoint-10", "sub", "deeper", "c.txt"))


def test_remove_a_folder_of_more_than_1000_files(request: pytest.FixtureRequest, storage_root: str) -> None:
    """One S3 DeleteObjects call takes at most 1000 keys."""
    location = storage.join(storage_root, "many")
    if _server(request, storage_root) is None:
        Path(location).mkdir(parents=True)
        for i in range(1001):
            Path(location, f"f{i}").write_bytes(b"")
    else:
        bucket, _, key = location.removeprefix("s3://").partition("/")
        client = request.getfixturevalue("s3_server").client()
        for i in range(1001):
            client.put_object(Bucket=bucket, Key=f"{key}/f{i}", Body=b"")
    assert len(storage.children(location)) == 1001
    storage.remove(location)
    assert not storage.exists(location)
    assert storage.children(location) == []


def test_local_copy_of_a_file(storage_root: str) -> None:
    data = os.urandom(3 * MB)
    location = storage.join(storage_root, "files", "file-1")
    _write(location, data)
    with storage.local_copy(location) as path:
        assert isinstance(path, Path)
        assert path.read_bytes() == data
    if storage.is_remote(location):
        assert not path.exists()  # a temporary copy, gone after use
        assert not path.parent.exists()
    else:
        assert path == Path(location)  # the file itself, left in place
        assert path.exists()


def test_local_copy_of_a_folder(storage_root: str, folder: Path) -> None:
    location = storage.join(storage_root, "adapter")
    storage.put(folder, location)
    with storage.local_copy(location) as path:
        assert _tree(path) == _tree(folder)
    assert path.exists() != storage.is_remote(location)


def test_local_copy_of_a_remote_file_is_removed_when_reading_raises(s3_env: S3Server, tmp_path: Path) -> None:
    location = s3_env.storage_url(f"{tmp_path.name}/file")
    _write(location, b"data")
    with pytest.raises(Refused), storage.local_copy(location) as path:
        raise Refused
    assert not path.exists()
