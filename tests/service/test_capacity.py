"""Memory-aware scheduling: an "auto" batch size lowered to what the free memory holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.jobs import capacity
from service.jobs.hyperparameters import resolve_hyperparameters
from trainer.memory import GIB, ModelShape, training_bytes


def test_auto_batch_size_is_lowered_to_the_memory_limit_and_an_explicit_one_is_kept() -> None:
    assert resolve_hyperparameters({}, 4000).batch_size == 8
    assert resolve_hyperparameters({}, 4000, batch_size_limit=3).batch_size == 3
    assert resolve_hyperparameters({"batch_size": 16}, 4000, batch_size_limit=3).batch_size == 16


def test_memory_batch_limit_uses_the_longest_example_and_the_free_memory(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shape = ModelShape.read(tiny_model)
    assert shape is not None
    # Free memory (the hardware's) set to what a step of 1600 tokens needs: two 800-token examples.
    two = training_bytes(shape, 2 * 800, compute_bytes=4, checkpointing=True)
    monkeypatch.setattr(capacity, "free_memory_bytes", lambda: two)
    monkeypatch.setattr(capacity, "gpu_visible", lambda: False)

    limit = capacity.memory_batch_limit(tiny_model, 800, 16, upper=8)
    assert limit is not None and 1 <= limit.batch_size < 8
    assert f"Batch size {limit.batch_size} (not 8)" in limit.reason and "GiB is free" in limit.reason

    monkeypatch.setattr(capacity, "free_memory_bytes", lambda: 100 * GIB)
    assert capacity.memory_batch_limit(tiny_model, 800, 16, upper=8) is None
    # Shorter examples (a lower max_seq_length at validation) fit more per batch.
    monkeypatch.setattr(capacity, "free_memory_bytes", lambda: two)
    short = capacity.memory_batch_limit(tiny_model, 64, 16, upper=8)
    assert short is None or short.batch_size > limit.batch_size
    assert capacity.memory_batch_limit(tmp_path / "no-model", 800, 16, upper=8) is None
