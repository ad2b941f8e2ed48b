"""Loading the base model for QLoRA: 4-bit NF4 weights (bitsandbytes), LoRA settings for peft."""

from __future__ import annotations

from typing import Any

import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from trainer.spec import LoraSettings, TrainingSpec


def compute_dtype() -> torch.dtype:
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def quantization_config(spec: TrainingSpec) -> BitsAndBytesConfig | None:
    if not spec.load_in_4bit:
        return None
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype(),
    )


class ModelLoadError(Exception):
    """The base model's weights could not be loaded."""


def load_base_model(spec: TrainingSpec) -> Any:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        return AutoModelForCausalLM.from_pretrained(
            spec.base_model,
            quantization_config=quantization_config(spec),
            dtype=compute_dtype(),
            device_map={"": device},
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"The base model {spec.base_model} could not be loaded: {exc}") from exc


def lora_config(settings: LoraSettings) -> LoraConfig:
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )
