"""Whether a trainer fits in the memory left beside the serving engine.

The engine holds its share from start-up (vLLM's --gpu-memory-utilization, or its KV cache on
CPU); a trainer needs roughly its base model in 4-bit plus working memory. A job that would not
fit waits in `queued`, with an event saying so, instead of failing or squeezing the engine.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

GIB = 2**30
# 4-bit NF4 weights with double quantization are ~0.28x their bf16 size; plus LoRA, optimizer,
# activations with gradient checkpointing, and the CUDA/Python runtime.
_QUANTIZED_FRACTION = 0.3
_OVERHEAD_BYTES = 2 * GIB


def estimated_trainer_bytes(model_path: Path) -> int:
    weights = sum(p.stat().st_size for p in model_path.glob("*.safetensors")) or sum(
        p.stat().st_size for p in model_path.glob("*.bin")
    )
    return int(weights * _QUANTIZED_FRACTION) + _OVERHEAD_BYTES


def free_memory_bytes() -> int:
    """Free memory where the trainer will run: the GPU's when one is visible, else the machine's."""
    if shutil.which("nvidia-smi"):
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
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


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
