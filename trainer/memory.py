"""How much memory QLoRA training needs, estimated from the base model's config.json.

Two choices rest on it. The gateway picks the largest "auto" batch size (up to the dataset rule's)
whose estimate fits the free memory, and the trainer leaves gradient checkpointing off when a whole
step's activations fit anyway: checkpointing recomputes the forward pass, which costs about a third
of the speed (measured on CPU here; ~25% is the usual figure on GPUs).

For `t` tokens in a step (the worst case: batch size x the longest example) and `b` bytes per
activation (2 for bf16 on a GPU, 4 for fp32 on CPU), with h the hidden size and i the MLP width:
- weights: linear layers in NF4 with double quantization, ~0.53 bytes per parameter; the
  embeddings and the output head stay unquantized, b bytes per parameter;
- LoRA: its parameters, their gradients and AdamW's two moments, all fp32 (16 bytes each);
- activations kept for the backward pass, per token and layer: about (16h + 5i) values for a
  Llama-style block with LoRA dropout on every linear layer; with gradient checkpointing only each
  layer's input (h) stays, plus one layer being recomputed;
- logits: vocabulary x 10b bytes per token: the logits, the loss's fp32 copies and gradients, and
  TRL's entropy and accuracy metrics over them (calibrated with bench/memory_estimate.py on CPU,
  where this term was most of what a first, leaner count missed);
- the runtime (CUDA context, allocator slack): a fixed 1 GiB; then 20% margin on the total.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

GIB = 2**30
_NF4_BYTES_PER_PARAM = 0.53
_RUNTIME_BYTES = 1 * GIB
_MARGIN = 1.2


@dataclass(frozen=True)
class ModelShape:
    hidden_size: int
    intermediate_size: int
    num_layers: int
    vocab_size: int
    kv_size: int  # key (or value) projection width: KV heads x head dim
    tied_embeddings: bool

    @classmethod
    def read(cls, model_dir: Path) -> ModelShape | None:
        """The shape from a local model folder's config.json; None when it has none we can read."""
        try:
            config = json.loads((model_dir / "config.json").read_text())
        except (OSError, ValueError):
            return None
        config = config.get("text_config", config)  # multimodal configs nest the language model's
        try:
            hidden = int(config["hidden_size"])
            heads = int(config["num_attention_heads"])
            head_dim = int(config.get("head_dim") or hidden // heads)
            return cls(
                hidden_size=hidden,
                intermediate_size=int(config["intermediate_size"]),
                num_layers=int(config["num_hidden_layers"]),
                vocab_size=int(config["vocab_size"]),
                kv_size=int(config.get("num_key_value_heads") or heads) * head_dim,
                tied_embeddings=bool(config.get("tie_word_embeddings", False)),
            )
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def linear_params(self) -> int:
        h, i, kv = self.hidden_size, self.intermediate_size, self.kv_size
        return self.num_layers * (2 * h * h + 2 * h * kv + 3 * h * i)

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)

    def lora_params(self, rank: int) -> int:
        """Every linear layer of every block (the default target), A and B matrices."""
        h, i, kv = self.hidden_size, self.intermediate_size, self.kv_size
        return self.num_layers * rank * (9 * h + 2 * kv + 3 * i)


def training_bytes(
    shape: ModelShape, tokens_per_step: int, *, compute_bytes: int, checkpointing: bool, lora_rank: int = 16
) -> int:
    """Estimated peak memory of a training step (see the module docstring)."""
    weights = shape.linear_params * _NF4_BYTES_PER_PARAM + shape.embedding_params * compute_bytes
    lora = shape.lora_params(lora_rank) * 16
    block = 16 * shape.hidden_size + 5 * shape.intermediate_size
    kept_per_token = (
        (shape.num_layers * shape.hidden_size + block) if checkpointing else shape.num_layers * block
    )
    per_token = (kept_per_token + shape.vocab_size * 10) * compute_bytes
    return int((weights + lora + tokens_per_step * per_token + _RUNTIME_BYTES) * _MARGIN)


def largest_fitting_batch(
    shape: ModelShape,
    tokens_per_example: int,
    free_bytes: int,
    upper: int,
    *,
    compute_bytes: int,
    lora_rank: int,
) -> int:
    """The largest batch size up to `upper` whose step fits in `free_bytes` with gradient
    checkpointing on; 1 when none does (whether to wait for memory is the gateway's call)."""
    for batch in range(upper, 1, -1):
        needed = training_bytes(
            shape,
            batch * tokens_per_example,
            compute_bytes=compute_bytes,
            checkpointing=True,
            lora_rank=lora_rank,
        )
        if needed <= free_bytes:
            return batch
    return 1


def free_memory_bytes() -> int:
    """Free memory where training runs: the GPU's when torch sees one, else the machine's."""
    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.mem_get_info()[0])
    return available_ram_bytes()


def available_ram_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0
