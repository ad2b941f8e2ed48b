"""Tokenized training data cached by content: the same file, tokenizer, template and max length
tokenize once (a resumed or repeated job, or a second job on the same file, starts sooner)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datasets import Dataset

# Bump when tokenization or the cached layout changes, so stale entries are not reused.
FORMAT_VERSION = 2


def cache_key(data_file: Path, tokenizer: Any, max_length: int) -> str:
    digest = hashlib.sha256()
    digest.update(f"v{FORMAT_VERSION}:{max_length}:".encode())
    with data_file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    digest.update(json.dumps(tokenizer.chat_template, sort_keys=True, default=str).encode())
    vocab_file = Path(str(tokenizer.name_or_path)) / "tokenizer.json"
    digest.update(vocab_file.read_bytes() if vocab_file.is_file() else str(tokenizer.name_or_path).encode())
    return digest.hexdigest()


def cached(
    cache_dir: Path | None, key: str, build: Callable[[], tuple[Dataset, dict[str, Any]]]
) -> tuple[Dataset, dict[str, Any], bool]:
    """The dataset and its metadata for `key`, built (and stored) on a miss; and whether it hit."""
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
