"""The readers an upload streams through (service/uploads.py): a part checked against its caps as it
is stored, and an upload's parts read one after another as the one file they make, hashed on the way.
Both hand trainer/storage.py's `write_stream` a chunk at a time: nothing holds a part in memory."""

from __future__ import annotations

import hashlib
from collections.abc import Generator, Iterable

from trainer import storage
from trainer.storage import Readable


class CappedReader:
    """Reads through to `stream`, counting, and raises the error of the lowest cap the bytes pass
    (the storage then keeps nothing of them)."""

    def __init__(self, stream: Readable, caps: list[tuple[int, Exception]]) -> None:
        self.stream = stream
        self.caps = sorted(caps, key=lambda cap: cap[0])
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.stream.read(size)
        self.size += len(chunk)
        for limit, error in self.caps:
            if self.size > limit:
                raise error
        return chunk


class JoinedReader:
    """The stored files at `locations`, in order, as one stream, with the md5 of what was read.

    `read(n)` returns n bytes until the end: S3's multipart upload (trainer/storage.py) makes a part
    of each read, and every part but the last must be full. A part file is opened only when the
    reading reaches it."""

    def __init__(self, locations: Iterable[str]) -> None:
        self._chunks = _chunks(locations)
        self._buffer = bytearray()
        self._md5 = hashlib.md5(usedforsecurity=False)  # a checksum the client compares, not security
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        taken = len(self._buffer) if size < 0 else min(size, len(self._buffer))
        out = bytes(self._buffer[:taken])
        del self._buffer[:taken]
        self._md5.update(out)
        self.size += len(out)
        return out

    @property
    def md5(self) -> str:
        return self._md5.hexdigest()

    def close(self) -> None:
        """Closes the part being read, if any (a stream from S3 holds a connection)."""
        self._chunks.close()


def _chunks(locations: Iterable[str]) -> Generator[bytes, None, None]:
    for location in locations:
        yield from storage.iter_bytes(location)
