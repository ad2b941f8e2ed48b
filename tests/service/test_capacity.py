"""Memory-aware scheduling: an "auto" batch size lowered to what the free memory holds.

The free memory is never the machine's: every test sets it (or the probe's answer) explicitly, to
the estimate of a step of a chosen size, so each outcome is asserted in a case of its own.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from service.jobs import capacity
from service.jobs.hyperparameters import resolve_hyperparameters
from trainer.memory import GIB, ModelShape, training_bytes

UPPER, RANK = 8, 16


def test_auto_batch_size_is_lowered_to_the_memory_limit_and_an_explicit_one_is_kept() -> None:
    assert resolve_hyperparameters({}, 4000).batch_size == 8
    assert resolve_hyperparameters({}, 4000, batch_size_limit=3).batch_size == 3
    assert resolve_hyperparameters({"batch_size": 16}, 4000, batch_size_limit=3).batch_size == 16


@pytest.fixture
def shape(tiny_model: Path) -> ModelShape:
    found = ModelShape.read(tiny_model)
    assert found is not None
    return found


def step_bytes(shape: ModelShape, tokens: int, compute_bytes: int = 4) -> int:
    """The estimate for a step of `tokens` tokens, exactly what `memory_batch_limit` compares."""
    return training_bytes(shape, tokens, compute_bytes=compute_bytes, checkpointing=True, lora_rank=RANK)


def set_free_memory(monkeypatch: pytest.MonkeyPatch, free: int, *, gpu: bool = False) -> None:
    monkeypatch.setattr(capacity, "free_memory_bytes", lambda: free)
    monkeypatch.setattr(capacity, "gpu_visible", lambda: gpu)


@pytest.mark.parametrize(
    ("free_tokens", "example_tokens", "expected"),
    [
        (2 * 800, 800, 2),  # exactly two 800-token examples fit
        (2 * 800 + 799, 800, 2),  # a third does not, however close
        (3 * 800, 800, 3),
        (5 * 64, 64, 5),
        (799, 800, 1),  # not even one fits: 1 (whether to wait is memory_shortfall's call)
    ],
)
def test_batch_size_is_lowered_to_what_the_free_memory_holds(
    tiny_model: Path,
    shape: ModelShape,
    monkeypatch: pytest.MonkeyPatch,
    free_tokens: int,
    example_tokens: int,
    expected: int,
) -> None:
    set_free_memory(monkeypatch, step_bytes(shape, free_tokens))
    limit = capacity.memory_batch_limit(tiny_model, example_tokens, RANK, upper=UPPER)
    assert limit is not None
    assert limit.batch_size == expected
    assert limit.reason.startswith(f"Batch size {expected} (not {UPPER}): ")
    assert f"about {example_tokens} tokens" in limit.reason and "GiB is free" in limit.reason


@pytest.mark.parametrize(
    ("free_tokens", "example_tokens"),
    [
        (UPPER * 800, 800),  # exactly the upper batch size fits
        (UPPER * 64, 64),
        (2 * 800, 64),  # room for 25 short examples, more than the upper 8
    ],
)
def test_no_limit_when_the_upper_batch_size_fits(
    tiny_model: Path,
    shape: ModelShape,
    monkeypatch: pytest.MonkeyPatch,
    free_tokens: int,
    example_tokens: int,
) -> None:
    set_free_memory(monkeypatch, step_bytes(shape, free_tokens))
    assert capacity.memory_batch_limit(tiny_model, example_tokens, RANK, upper=UPPER) is None


def test_no_limit_with_plenty_of_memory(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_free_memory(monkeypatch, 100 * GIB)
    assert capacity.memory_batch_limit(tiny_model, 800, RANK, upper=UPPER) is None


def test_shorter_examples_fit_more_per_batch_in_the_same_memory(
    tiny_model: Path, shape: ModelShape, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lower max_seq_length at validation means a shorter longest example.
    set_free_memory(monkeypatch, step_bytes(shape, 1600))
    long = capacity.memory_batch_limit(tiny_model, 800, RANK, upper=UPPER)
    short = capacity.memory_batch_limit(tiny_model, 400, RANK, upper=UPPER)
    assert long is not None and short is not None
    assert (long.batch_size, short.batch_size) == (2, 4)


def test_a_gpu_counts_activations_in_bf16(
    tiny_model: Path, shape: ModelShape, monkeypatch: pytest.MonkeyPatch
) -> None:
    free = step_bytes(shape, 2 * 800, compute_bytes=2)
    assert step_bytes(shape, 2 * 800, compute_bytes=4) > free
    set_free_memory(monkeypatch, free, gpu=True)
    gpu = capacity.memory_batch_limit(tiny_model, 800, RANK, upper=UPPER)
    set_free_memory(monkeypatch, free, gpu=False)
    cpu = capacity.memory_batch_limit(tiny_model, 800, RANK, upper=UPPER)
    assert gpu is not None and cpu is not None
    assert (gpu.batch_size, cpu.batch_size) == (2, 1)


def test_no_limit_for_a_model_of_unknown_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_free_memory(monkeypatch, 0)  # would limit any model whose shape is known
    assert capacity.memory_batch_limit(tmp_path / "no-model", 800, RANK, upper=UPPER) is None
    (tmp_path / "no-shape").mkdir()
    (tmp_path / "no-shape" / "config.json").write_text('{"model_type": "llama"}')
    assert capacity.memory_batch_limit(tmp_path / "no-shape", 800, RANK, upper=UPPER) is None


@pytest.mark.parametrize(
    ("free_gib", "required_gib", "waits"),
    [(3.0, 2.0, False), (2.0, 2.0, False), (1.5, 2.0, True), (0.0, 0.5, True)],
)
def test_memory_shortfall(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, free_gib: float, required_gib: float, waits: bool
) -> None:
    monkeypatch.setattr(capacity, "free_memory_bytes", lambda: int(free_gib * GIB))
    shortfall = capacity.memory_shortfall(tmp_path, required_gib)
    if not waits:
        assert shortfall is None
    else:
        assert shortfall is not None
        assert f"needs about {required_gib:.1f} GiB and {free_gib:.1f} GiB is free" in shortfall


def test_memory_shortfall_estimates_the_trainer_from_the_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 1000)
    needed = capacity.estimated_trainer_bytes(tmp_path)
    assert needed == int(1000 * 0.3) + 2 * GIB
    monkeypatch.setattr(capacity, "free_memory_bytes", lambda: needed)
    assert capacity.memory_shortfall(tmp_path, None) is None
    monkeypatch.setattr(capacity, "free_memory_bytes", lambda: needed - 1)
    assert capacity.memory_shortfall(tmp_path, None) is not None


def _nvidia_smi(stdout: str | None) -> Any:
    def run(*args: Any, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        if stdout is None:
            raise subprocess.CalledProcessError(9, "nvidia-smi")
        return subprocess.CompletedProcess(args, 0, stdout=stdout)

    return run


@pytest.mark.parametrize(
    ("gpu", "stdout", "expected"),
    [
        (True, "1536\n", 1536 * 2**20),  # MiB, the GPU's
        (True, "512\n2048\n", 512 * 2**20),  # several GPUs: the first
        (True, None, 7 * GIB),  # nvidia-smi failed: the machine's
        (True, "[N/A]\n", 7 * GIB),
        (True, "", 7 * GIB),
        (False, "1536\n", 7 * GIB),  # no GPU: the machine's, nvidia-smi not asked
    ],
)
def test_free_memory_probe(
    monkeypatch: pytest.MonkeyPatch, gpu: bool, stdout: str | None, expected: int
) -> None:
    monkeypatch.setattr(capacity, "gpu_visible", lambda: gpu)
    monkeypatch.setattr(capacity, "available_ram_bytes", lambda: 7 * GIB)
    monkeypatch.setattr(capacity.subprocess, "run", _nvidia_smi(stdout))
    assert capacity.free_memory_bytes() == expected
