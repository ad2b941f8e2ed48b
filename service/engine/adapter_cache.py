"""Adapters from object storage, on this host's disk: vLLM loads a LoRA adapter from a local
folder, so an adapter stored in S3 is copied into a cache folder first, once per location.

A stored adapter or checkpoint is written once and then only read (the trainer reports it after its
copy completed), so a location always means the same bytes and a cached copy never goes stale. A
copy appears whole: it is fetched beside the cache entry and renamed into place, so a gateway
killed mid-copy never leaves a half adapter for vLLM to read.

The cache keeps the `max_entries` most recently used copies. vLLM reads an adapter's folder only
when loading it (AdapterRegistry keeps the engine's own LRU from ever evicting, so nothing is read
again later), and each engine's registry calls this under its lock with a cache folder of its own,
so removing the oldest copies never races a load.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from trainer import storage
from trainer.checkpoints import RESUME_STATE_FILES

_NOT_SERVED = RESUME_STATE_FILES | {"trainer_state.json"}


class AdapterCache:
    def __init__(self, folder: Path, max_entries: int = 64) -> None:
        self.folder = folder
        self.max_entries = max_entries

    def local_path(self, location: str) -> str:
        """A local folder with the adapter at `location` (blocking: it may download)."""
        if not storage.is_remote(location):
            return location
        entry = self.folder / hashlib.sha256(location.encode()).hexdigest()[:32]
        if entry.is_dir():
            os.utime(entry)  # most recently used
            return str(entry)
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(dir=self.folder, prefix=".partial-"))
        try:
            storage.fetch(location, partial / "adapter", skip=_NOT_SERVED)
            try:
                os.rename(partial / "adapter", entry)
            except OSError:
                if not entry.is_dir():  # not a concurrent copy that won the rename
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        self._trim(keep=entry)
        return str(entry)

    def _trim(self, keep: Path) -> None:
        entries = [p for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        entries.sort(key=lambda p: p.stat().st_mtime)
        for old in entries[: max(0, len(entries) - self.max_entries)]:
            if old != keep:
                shutil.rmtree(old, ignore_errors=True)
