"""Upkeep the scheduler does between jobs: expired files removed (they are also refused whenever
read), and each organization's tokenized-data cache, which goes with the files it came from."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from pathlib import Path

from service.files import FileStore
from service.store import FileRow
from trainer.token_cache import forget_file

logger = logging.getLogger(__name__)

PURGE_EXPIRED_FILES_EVERY_S = 60.0


class Housekeeping:
    def __init__(self, data_dir: Path, files: FileStore) -> None:
        self.cache_dir = data_dir.resolve() / "cache" / "tokenized"
        self.files = files
        self._next_purge = 0.0
        files.on_remove.append(self._forget_tokenized_data)

    def token_cache_dir(self, org_id: str) -> Path:
        """The organization's own tokenized-data cache: a cache hit must not reveal that another
        organization trained on the same data. Named by a digest: any organization name is safe."""
        return self.cache_dir / hashlib.sha256(org_id.encode()).hexdigest()[:24]

    async def purge_expired_files(self) -> None:
        """At most once a minute."""
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + PURGE_EXPIRED_FILES_EVERY_S
        removed = await asyncio.to_thread(self.files.purge_expired)
        if removed:
            logger.info("Removed %d expired file(s)", removed)

    def _forget_tokenized_data(self, row: FileRow) -> None:
        forget_file(self.token_cache_dir(row.organization_id), row.id)
