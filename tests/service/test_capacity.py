"""Memory-aware scheduling: an "auto" batch size lowered to what the free memory holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.jobs import capacity
from service.jobs.hyperparameters import resolve_hyperparameters
from trainer.memory import GIB, ModelShape, training_bytes


def _training_file(tmp_path: Path, words: int) -> Path:
    path = tmp_path / "train.jsonl"
    example = {
        "messages": [
            {"role": "user", "content": "word " * words},
            {"role": "assistant", "content": "ok"},
        ]
    }
    path.write_text((json.dumps(example) + "\n") * 4000)
    return path


def test_auto_batch_size_is_lowered_to_the_memory_limit_and_an_explicit_one_is_kept() -> None:
    assert resolve_hyperparameters({}, 4000).batch_size == 8
    assert resolve_hyperparameters({}, 4000, batch_size_limit=3).batch_size == 3
    assert resolve_hyperparameters({"batch_size": 16}, 4000, batch_size_limit=3).batch_size == 16


def test_memory_batch_limit_uses_the_longest_example_and_the_free_memory(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _training_file(tmp_path, words=400)
    shape = ModelShape.read(tiny_model)
    assert shape is not None
    # Free memory (the hardware's) set to what a step of 1600 tokens needs: a few of these examples.
    two = training_bytes(shape, 2 * 800, compute_bytes=4, checkpointing=True)
    monkeypatch.setattr(capacity, "free_memory_bytes", lambda: two)
    monkeypatch.setattr(capacity, "gpu_visible", lambda: False)

    limit = capacity.memory_batch_limit(tiny_model, data, "supervised", 2048, 16, upper=8)
    assert limit is not None and 1 <= limit.batch_size < 8
    assert f"Batch size {limit.batch_size} (not 8)" in limit.reason and "GiB is free" in limit.reason

    monkeypatch.setattr(capacity, "free_memory_bytes", lambda: 100 * GIB)
    assert capacity.memory_batch_limit(tiny_model, data, "supervised", 2048, 16, upper=8) is None
    # A cap on the sequence length caps the longest example too.
    monkeypatch.setattr(capacity, "free_memory_bytes", lambda: two)
    short = capacity.memory_batch_limit(tiny_model, data, "supervised", 64, 16, upper=8)
    assert short is None or short.batch_size > limit.batch_size
    assert capacity.memory_batch_limit(tmp_path / "no-model", data, "supervised", 2048, 16, upper=8) is None
