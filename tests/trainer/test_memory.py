"""The memory estimate behind "auto" batch sizes and gradient checkpointing."""

from __future__ import annotations

import json
from pathlib import Path

from trainer.memory import GIB, ModelShape, largest_fitting_batch, training_bytes

LLAMA_3_1_8B = {
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "tie_word_embeddings": False,
}


def _shape(tmp_path: Path, config: dict[str, object]) -> ModelShape:
    (tmp_path / "config.json").write_text(json.dumps(config))
    shape = ModelShape.read(tmp_path)
    assert shape is not None
    return shape


def test_shape_is_read_from_the_model_config(tiny_model: Path, tmp_path: Path) -> None:
    shape = ModelShape.read(tiny_model)
    assert shape == ModelShape(
        hidden_size=256,
        intermediate_size=512,
        num_layers=4,
        vocab_size=1024,
        kv_size=128,
        tied_embeddings=False,
    )
    assert ModelShape.read(tmp_path / "missing") is None
    (tmp_path / "config.json").write_text('{"hidden_size": 8}')
    assert ModelShape.read(tmp_path) is None


def test_an_8b_model_estimate_is_in_qlora_territory(tmp_path: Path) -> None:
    shape = _shape(tmp_path, LLAMA_3_1_8B)
    assert 6.9e9 < shape.linear_params < 7.0e9  # Llama-3.1-8B: 8.03 B, of which 1.05 B embeddings
    weights_only = training_bytes(shape, 0, compute_bytes=2, checkpointing=True)
    one_sequence = training_bytes(shape, 2048, compute_bytes=2, checkpointing=True)
    # QLoRA's paper: an 8B-class model fine-tunes in well under 24 GB with checkpointing.
    assert 6 * GIB < weights_only < one_sequence < 20 * GIB
    assert training_bytes(shape, 2048, compute_bytes=2, checkpointing=False) > 2 * one_sequence


def test_batch_size_shrinks_to_what_fits(tmp_path: Path) -> None:
    shape = _shape(tmp_path, LLAMA_3_1_8B)

    def batch(free_gib: float, tokens: int = 2048) -> int:
        return largest_fitting_batch(shape, tokens, int(free_gib * GIB), 8, compute_bytes=2, lora_rank=16)

    assert batch(139) == 8  # an H200 to itself
    assert 1 < batch(40) < 8
    assert batch(24) < batch(40)
    assert batch(24, tokens=256) == 8  # short examples fit many to a batch
    assert batch(4) == 1  # nothing fits: the smallest batch, and the gateway's memory wait decides
