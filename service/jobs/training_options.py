"""Training knobs OpenAI's API has no field for, passed as job metadata under the `opentune.` prefix.

    metadata={"opentune.lora_rank": "32", "opentune.lora_alpha": "64", "opentune.lora_dropout": "0.1",
              "opentune.lora_target_modules": "q_proj,v_proj", "opentune.max_seq_length": "4096",
              # reinforcement jobs: the sampled answers' length and temperature
              "opentune.max_completion_tokens": "256", "opentune.temperature": "0.7"}

Checked when the job is created, against what the serving engine can load: a rank in vLLM's set
and at most the engine's `--max-lora-rank`, projection modules vLLM's LoRA layers support. Anything
else is refused then, not discovered when the adapter fails to load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.errors import InvalidRequest
from trainer.spec import LoraSettings

PREFIX = "opentune."
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# Linear layers vLLM applies LoRA to in the Llama/Qwen/Mistral families (their packed forms too).
SERVABLE_TARGET_MODULES = frozenset(
    {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "qkv_proj", "gate_up_proj"}
)


@dataclass(frozen=True)
class TrainingOptions:
    lora: LoraSettings
    max_seq_length: int
    max_completion_tokens: int | None = None  # reinforcement: tokens per sampled answer
    temperature: float | None = None  # reinforcement: sampling temperature


def _number(kind: Callable[[str], Any], key: str, value: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise InvalidRequest(
            f"metadata '{key}' must be {'an integer' if kind is int else 'a number'}, got {value!r}.",
            param=f"metadata.{key}",
        ) from None


def parse_training_options(metadata: dict[str, str] | None, max_lora_rank: int) -> TrainingOptions:
    options = {k.removeprefix(PREFIX): (k, v) for k, v in (metadata or {}).items() if k.startswith(PREFIX)}
    known = {
        "lora_rank",
        "lora_alpha",
        "lora_dropout",
        "lora_target_modules",
        "max_seq_length",
        "max_completion_tokens",
        "temperature",
        "eval_grader",  # the evaluation report's grader, not a training knob: eval_grader.py checks it
    }
    for name, (key, _) in options.items():
        if name not in known:
            raise InvalidRequest(
                f"Unknown training option '{key}'. Known: {', '.join(PREFIX + k for k in sorted(known))}.",
                param=f"metadata.{key}",
            )
    lora = LoraSettings()
    if "lora_rank" in options:
        key, value = options["lora_rank"]
        rank = _number(int, key, value)
        allowed = [r for r in VLLM_LORA_RANKS if r <= max_lora_rank]
        if rank not in allowed:
            raise InvalidRequest(
                f"LoRA rank {rank} cannot be served: the engine accepts ranks {allowed} "
                f"(vLLM's ranks up to this server's max LoRA rank {max_lora_rank}).",
                param=f"metadata.{key}",
            )
        lora = lora.model_copy(update={"r": rank, "alpha": 2 * rank})
    if "lora_alpha" in options:
        key, value = options["lora_alpha"]
        alpha = _number(int, key, value)
        if alpha <= 0:
            raise InvalidRequest("LoRA alpha must be positive.", param=f"metadata.{key}")
        lora = lora.model_copy(update={"alpha": alpha})
    if "lora_dropout" in options:
        key, value = options["lora_dropout"]
        dropout = _number(float, key, value)
        if not 0 <= dropout < 1:
            raise InvalidRequest("LoRA dropout must be in [0, 1).", param=f"metadata.{key}")
        lora = lora.model_copy(update={"dropout": dropout})
    if "lora_target_modules" in options:
        key, value = options["lora_target_modules"]
        modules = sorted({m.strip() for m in value.split(",") if m.strip()})
        unservable = [m for m in modules if m not in SERVABLE_TARGET_MODULES]
        if not modules or unservable:
            raise InvalidRequest(
                f"LoRA target modules {unservable or modules} cannot be served by the engine; "
                f"choose from {', '.join(sorted(SERVABLE_TARGET_MODULES))}.",
                param=f"metadata.{key}",
            )
        lora = lora.model_copy(update={"target_modules": modules})
    max_seq_length = 2048
    if "max_seq_length" in options:
        key, value = options["max_seq_length"]
        max_seq_length = _number(int, key, value)
        if not 64 <= max_seq_length <= 131_072:
            raise InvalidRequest("max_seq_length must be between 64 and 131072.", param=f"metadata.{key}")
    sampling = _sampling_options(options)
    return TrainingOptions(lora=lora, max_seq_length=max_seq_length, **sampling)


def _sampling_options(options: dict[str, tuple[str, str]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if "max_completion_tokens" in options:
        key, value = options["max_completion_tokens"]
        found["max_completion_tokens"] = _number(int, key, value)
        if not 1 <= found["max_completion_tokens"] <= 32_768:
            raise InvalidRequest(
                "max_completion_tokens must be between 1 and 32768.", param=f"metadata.{key}"
            )
    if "temperature" in options:
        key, value = options["temperature"]
        found["temperature"] = _number(float, key, value)
        if not 0 < found["temperature"] <= 2:
            raise InvalidRequest("temperature must be greater than 0 and at most 2.", param=f"metadata.{key}")
    return found
