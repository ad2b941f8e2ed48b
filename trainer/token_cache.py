"""Tokenized training data cached by content: the same file, tokenizer, template and max length
tokenize once (a resumed or repeated job, or a second job on the same file, starts sooner).

The gateway gives each organization its own cache folder (so a cache hit never tells one
organization what another trained on), and entries are named after the data file they came from
(`{file name}.{content key}`), so that deleting or expiring a file can drop its entries with it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # `datasets` is heavy; the gateway imports this module only to purge entries
    from datasets import Dataset

# Bump when tokenization or the cached layout changes, so stale entries are not reused.
FORMAT_VERSION = 3


def cache_key(data_file: Path, tokenizer: Any, max_length: int) -> str:
    digest = hashlib.sha256()
    digest.update(f"v{FORMAT_VERSION}:{max_length}:".encode())
    with data_file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    digest.update(json.dumps(tokenizer.chat_template, sort_keys=True, default=str).encode())
    vocab_file = Path(str(tokenizer.name_or_path)) / "tokenizer.json"
    digest.update(vocab_file.read_bytes() if vocab_file.is_file() else str(tokenizer.name_or_path).encode())
    return f"{data_file.name}.{digest.hexdigest()}"


def forget_file(cache_dir: Path, file_name: str) -> None:
    """Remove every entry (and half-written one) made from the data file named `file_name`."""
    if not cache_dir.is_dir():
        return
    for entry in cache_dir.glob(f"{_glob_escape(file_name)}.*"):
        shutil.rmtree(entry, ignore_errors=True)


def _glob_escape(name: str) -> str:
    return "".join(f"[{ch}]" if ch in "*?[" else ch for ch in name)


def cached(
    cache_dir: Path | None, key: str, build: Callable[[], tuple[Dataset, dict[str, Any]]]
) -> tuple[Dataset, dict[str, Any], bool]:
    """The dataset and its metadata for `key`, built (and stored) on a miss; and whether it hit."""
    from datasets import Dataset

    if cache_dir is None:
        dataset, meta = build()
        return dataset, meta, False
    entry = cache_dir / key
    if (entry / "meta.json").is_file():
        return (
            Dataset.load_from_disk(str(entry / "data")),
            json.loads((entry / "meta.json").read_text()),
            True,
        )
    dataset, meta = build()
    partial = cache_dir / f"{key}.partial"
    shutil.rmtree(partial, ignore_errors=True)  # left by a trainer that died while writing
    partial.mkdir(parents=True)
    dataset.save_to_disk(str(partial / "data"))
    (partial / "meta.json").write_text(json.dumps(meta))
    if not entry.exists():
        partial.rename(entry)  # whole entries only: a crash mid-write leaves no half entry
    return dataset, meta, False
