"""Whether a trainer fits in the memory left beside the serving engine.

The engine holds its share from start-up (vLLM's --gpu-memory-utilization, or its KV cache on
CPU); a trainer needs roughly its base model in 4-bit plus working memory. A job that would not
fit waits in `queued`, with an event saying so, instead of failing or squeezing the engine.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from trainer.memory import ModelShape, available_ram_bytes, largest_fitting_batch

GIB = 2**30
# 4-bit NF4 weights with double quantization are ~0.28x their bf16 size; plus LoRA, optimizer,
# activations with gradient checkpointing, and the CUDA/Python runtime.
_QUANTIZED_FRACTION = 0.3
_OVERHEAD_BYTES = 2 * GIB


def weights_bytes(model_path: Path) -> int:
    """The size of a model folder's weights as stored (safetensors, else .bin files)."""
    return sum(p.stat().st_size for p in model_path.glob("*.safetensors")) or sum(
        p.stat().st_size for p in model_path.glob("*.bin")
    )


def estimated_trainer_bytes(model_path: Path) -> int:
    return int(weights_bytes(model_path) * _QUANTIZED_FRACTION) + _OVERHEAD_BYTES


def gpu_visible() -> bool:
    return shutil.which("nvidia-smi") is not None


def free_memory_bytes() -> int:
    """Free memory where the trainer will run: the GPU's when one is visible, else the machine's.
    (Asked of nvidia-smi: the gateway itself never opens a CUDA context.)"""
    if gpu_visible():
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout
            return int(out.split()[0]) * 2**20
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            pass
    return available_ram_bytes()


def memory_shortfall(model_path: Path, required_gib: float | None) -> str | None:
    """Why a trainer would not fit now, or None when it does."""
    required = int(required_gib * GIB) if required_gib is not None else estimated_trainer_bytes(model_path)
    free = free_memory_bytes()
    if free >= required:
        return None
    return (
        f"Waiting for memory: training needs about {required / GIB:.1f} GiB and {free / GIB:.1f} GiB "
        "is free beside the serving engine; the job starts when enough is free"
    )


@dataclass(frozen=True)
class BatchSizeLimit:
    batch_size: int
    reason: str


def memory_batch_limit(
    model_path: Path, longest_example_tokens: int, lora_rank: int, upper: int
) -> BatchSizeLimit | None:
    """The largest batch size up to `upper` whose training step, with the file's longest example
    (counted when the files were validated, see trainer/file_stats.py), fits the free memory by
    trainer/memory.py's estimate; None when `upper` fits or the model's shape is unknown (no
    config.json to read). Never reads the training file."""
    shape = ModelShape.read(model_path)
    if shape is None:
        return None
    free = free_memory_bytes()
    compute_bytes = 2 if gpu_visible() else 4  # bf16 on a GPU, fp32 on CPU
    batch_size = largest_fitting_batch(
        shape, longest_example_tokens, free, upper, compute_bytes=compute_bytes, lora_rank=lora_rank
    )
    if batch_size >= upper:
        return None
    reason = (
        f"Batch size {batch_size} (not {upper}): the longest example has about {longest_example_tokens} "
        f"tokens and {free / GIB:.1f} GiB is free for training"
    )
    return BatchSizeLimit(batch_size, reason)
