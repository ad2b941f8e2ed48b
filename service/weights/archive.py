"""A zip archive written while it is sent: never whole in memory nor on disk.

zipfile writes to a stream it cannot seek with data descriptors (each member's sizes and CRC after
its data), so an archive can be produced member by member, chunk by chunk: `stream_zip` is a
generator that writes one chunk of a member and yields whatever zipfile produced. The web server
pulls it from a worker thread (a sync iterator in a StreamingResponse), so reading the members
(from the data folder or S3) never blocks the event loop.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ArchiveMember:
    name: str
    chunks: Callable[[], Iterator[bytes]]  # opened only when the member's turn comes
    compress: bool = True  # False for weights: they barely compress and deflating costs CPU


class _Sink:
    """What zipfile writes to: collects bytes until the generator hands them on. No `seek` nor
    `tell`, so zipfile treats it as unseekable and writes data descriptors."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        if data:
            self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def drain(self) -> Iterator[bytes]:
        if self._parts:
            joined = b"".join(self._parts)
            self._parts.clear()
            yield joined


def stream_zip(members: Iterable[ArchiveMember], modified: int | None = None) -> Iterator[bytes]:
    """The zip of `members`, in chunks of about the members' own chunk size; every member dated
    `modified` (unix time; now if None), so that the same model gives the same archive."""
    stamp = time.gmtime(modified if modified is not None else time.time())[:6]
    sink = _Sink()
    with zipfile.ZipFile(sink, "w") as archive:
        for member in members:
            info = zipfile.ZipInfo(member.name, date_time=max(stamp, (1980, 1, 1, 0, 0, 0)))
            info.compress_type = zipfile.ZIP_DEFLATED if member.compress else zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16  # a regular file, rw-r--r--
            # zip64 from the start: the size is not known before the data (a member over 4 GiB).
            chunks = member.chunks()
            try:
                with archive.open(info, "w", force_zip64=True) as entry:
                    for chunk in chunks:
                        entry.write(chunk)
                        yield from sink.drain()
            finally:
                _close(chunks)  # a storage stream left early (the client went away)
            yield from sink.drain()
    yield from sink.drain()


def _close(chunks: Iterator[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()
