"""Where bytes live: a local path, or an object (or a folder of them) in S3-compatible storage.

A *location* is a string: a local path (the data folder, the default) or `s3://bucket/key`. Rows
in the database keep locations, so a row written before a switch to S3 still reads. The gateway and
the trainer share this module: the gateway stores uploads, reads results and gives engines their
adapters; a trainer copies its inputs in and its checkpoints, adapter and metrics out
(trainer/staging.py). A "folder" in S3 is every object under `key/`.

boto3 rather than fsspec/s3fs: it is the reference S3 client and its transfer manager does the
multipart upload with memory bounded by configuration (part size x parts buffered), which is what a
gateway streaming a 512 MB upload needs; fsspec would add a layer (and an aiobotocore pin) and
nothing used here. Credentials, endpoint and region come from the standard `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`, `AWS_REGION` variables, which boto3 reads itself.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from boto3.s3.transfer import TransferConfig

S3_SCHEME = "s3://"
_CHUNK = 1024 * 1024
_PART = 8 * 1024 * 1024


def is_remote(location: str) -> bool:
    return location.startswith(S3_SCHEME)


def join(location: str, *parts: str) -> str:
    """`location/part/...`, for a path or an s3:// URL."""
    if is_remote(location):
        return "/".join([location.rstrip("/"), *parts])
    return str(Path(location, *parts))


def _split(location: str) -> tuple[str, str]:
    bucket, _, key = location.removeprefix(S3_SCHEME).partition("/")
    return bucket, key.rstrip("/")


@cache
def _s3() -> Any:
    import boto3

    return boto3.client("s3")


@cache
def _transfer_config() -> TransferConfig:
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(multipart_threshold=_PART, multipart_chunksize=_PART, max_concurrency=2)
    # Parts of a stream buffered at once (s3transfer's default is 10, i.e. 80 MB): with 2 parts in
    # flight and 2 read ahead, an upload holds about 4 x 8 MB, whatever the file's size.
    config.max_in_memory_upload_chunks = 2
    return config


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def write_stream(location: str, stream: Readable, private: bool = False) -> None:
    """Store what `stream` reads; nothing is left behind when reading raises (e.g. a size limit).
    A local file appears whole (written beside, then renamed); an S3 object appears when its
    multipart upload completes, and an upload cut short is aborted. `private`: a local file only
    its owner may read (mode 0600) from its first byte on (an S3 object: as the bucket allows)."""
    if is_remote(location):
        bucket, key = _split(location)
        _s3().upload_fileobj(_ReadOnly(stream), bucket, key, Config=_transfer_config())
        return
    final = Path(location)
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(final.name + ".partial")
    partial.unlink(missing_ok=True)  # a leftover would keep its mode
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        with open(os.open(partial, flags, 0o600 if private else 0o666), "wb") as out:
            shutil.copyfileobj(stream, out, _CHUNK)
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)


class _ReadOnly:
    """Hides seek/tell, so that the transfer manager streams parts in order through `read` (where a
    caller's size checks run) instead of seeking around the file."""

    def __init__(self, stream: Readable) -> None:
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)


def iter_bytes(location: str) -> Iterator[bytes]:
    """A stored file's bytes, in chunks (never all of it in memory)."""
    if is_remote(location):
        bucket, key = _split(location)
        body = _s3().get_object(Bucket=bucket, Key=key)["Body"]
        try:
            yield from body.iter_chunks(_CHUNK)
        finally:
            body.close()
        return
    with open(location, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            yield chunk


def _keys(location: str) -> Iterator[tuple[str, str]]:
    """(key, path relative to the folder) of every object in an S3 folder."""
    bucket, prefix = _split(location)
    pages = _s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    for page in pages:
        for item in page.get("Contents", []):
            yield item["Key"], item["Key"][len(prefix) + 1 :]


def exists(location: str) -> bool:
    """Whether a file or a non-empty folder is there."""
    if not is_remote(location):
        return Path(location).exists()
    from botocore.exceptions import ClientError

    bucket, key = _split(location)
    try:
        _s3().head_object(Bucket=bucket, Key=key)
        return True
    except ClientError:
        return next(_keys(location), None) is not None


def children(location: str) -> list[str]:
    """The names directly inside a folder (files and sub-folders)."""
    if not is_remote(location):
        folder = Path(location)
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    return sorted({relative.split("/", 1)[0] for _, relative in _keys(location)})


def remove(location: str) -> None:
    """Delete a file or a whole folder; nothing there is fine."""
    if not is_remote(location):
        path = Path(location)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        return
    bucket, key = _split(location)
    objects = [{"Key": object_key} for object_key, _ in _keys(location)]
    if not objects:  # a file (deleting one that is not there is fine for S3)
        _s3().delete_object(Bucket=bucket, Key=key)
    for start in range(0, len(objects), 1000):  # the most one DeleteObjects call takes
        _s3().delete_objects(Bucket=bucket, Delete={"Objects": objects[start : start + 1000]})


def put(source: Path, location: str, last: str | None = None) -> None:
    """Copy a local file or folder to `location`. In a folder, the file named `last` is copied after
    every other one, so that its presence means the copy is complete (a checkpoint's
    trainer_state.json, see trainer/checkpoints.py)."""
    if not is_remote(location):  # (no `last` here: a local checkpoint is checked by its content)
        if source.is_dir():
            shutil.copytree(source, location, dirs_exist_ok=True)
        else:
            Path(location).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, location)
        return
    bucket, key = _split(location)
    if not source.is_dir():
        _s3().upload_file(str(source), bucket, key, Config=_transfer_config())
        return
    files = sorted((p for p in source.rglob("*") if p.is_file()), key=lambda p: p.name == last)
    for path in files:
        relative = path.relative_to(source).as_posix()
        _s3().upload_file(str(path), bucket, f"{key}/{relative}", Config=_transfer_config())


def fetch(location: str, destination: Path, skip: frozenset[str] = frozenset()) -> Path:
    """Copy a stored file or folder to a local `destination` (files named in `skip` left out)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    if not is_remote(location):
        source = Path(location)
        if source.is_dir():
            shutil.copytree(source, destination, ignore=_skip_files(skip), dirs_exist_ok=True)
        else:
            shutil.copyfile(source, destination)
        return destination
    bucket, key = _split(location)
    objects = list(_keys(location))
    if not objects:
        _s3().download_file(bucket, key, str(destination))
        return destination
    for object_key, relative in objects:
        if relative.rsplit("/", 1)[-1] in skip:
            continue
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        _s3().download_file(bucket, object_key, str(target))
    return destination


def _skip_files(skip: frozenset[str]) -> Callable[[str, list[str]], list[str]]:
    """copytree's `ignore` for files named in `skip` (folders of those names are kept, as on S3)."""
    return lambda folder, names: [n for n in names if n in skip and not Path(folder, n).is_dir()]


@contextmanager
def local_copy(location: str) -> Iterator[Path]:
    """A local path to read the stored file or folder from: a local location itself, else a
    temporary copy removed on exit."""
    if not is_remote(location):
        yield Path(location)
        return
    with tempfile.TemporaryDirectory(prefix="opentune-") as scratch:
        yield fetch(location, Path(scratch) / "copy")
