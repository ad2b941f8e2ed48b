"""The README.md model card that travels with a downloaded adapter: where it came from and how it
was trained, in the Hugging Face model card layout (YAML front matter that the hub and peft read)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from service.jobs.training_options import VLLM_LORA_RANKS


@dataclass(frozen=True)
class ModelCardFacts:
    model: str  # the model's name here (ft:...)
    base_served_name: str
    base_reference: str  # what adapter_config.json names as the base (layout.base_reference)
    lora: dict[str, Any]  # the adapter's own adapter_config.json
    origin: str  # one sentence: trained by which job, which checkpoint, or imported when
    details: dict[str, str] = field(default_factory=dict)  # table rows, in order


def _when(timestamp: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def _numbers(values: dict[str, Any]) -> str:
    shown = [
        f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items() if v is not None
    ]
    return ", ".join(shown) or "-"


def trained_origin(job_id: str, finished_at: int | None) -> str:
    ended = f", finished {_when(finished_at)}" if finished_at else ""
    return f"Trained by opentune fine-tuning job `{job_id}`{ended}."


def checkpoint_origin(job_id: str, step: int, created_at: int) -> str:
    return f"A checkpoint of opentune fine-tuning job `{job_id}`, saved at step {step} ({_when(created_at)})."


def imported_origin(filename: str, created_at: int) -> str:
    return f"Imported into opentune from `{filename}` on {_when(created_at)}; it was not trained here."


def training_details(
    method: str, hyperparameters: dict[str, Any], trained_tokens: int | None, metrics: dict[str, Any] | None
) -> dict[str, str]:
    details = {"method": method, "hyperparameters": _numbers(hyperparameters)}
    if trained_tokens is not None:
        details["trained tokens"] = str(trained_tokens)
    if metrics:
        step = metrics.get("step")
        label = f"final metrics (step {step})" if step is not None else "final metrics"
        details[label] = _numbers({k: v for k, v in metrics.items() if k != "step"})
    return details


def render(facts: ModelCardFacts) -> str:
    lora = facts.lora
    targets = lora.get("target_modules")
    target_text = ", ".join(sorted(targets)) if isinstance(targets, list) else str(targets)
    rows = {
        "base model": f"`{facts.base_reference}` (served by opentune as `{facts.base_served_name}`)",
        "adapter": f"LoRA r={lora.get('r')}, alpha={lora.get('lora_alpha')}, "
        f"dropout={lora.get('lora_dropout')}, target modules: {target_text}",
        **facts.details,
    }
    table = "\n".join(f"| {key} | {_cell(value)} |" for key, value in rows.items())
    front_matter = json.dumps(facts.base_reference)  # a JSON string is a valid YAML scalar
    return f"""---
base_model: {front_matter}
library_name: peft
tags:
- lora
- opentune
---

# {facts.model}

{facts.origin}

| | |
|---|---|
{table}

## Use it

With peft and transformers (unzip the archive into `adapter/`):

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base = AutoModelForCausalLM.from_pretrained({json.dumps(facts.base_reference)})
model = PeftModel.from_pretrained(base, "adapter")
tokenizer = AutoTokenizer.from_pretrained("adapter")  # with the chat template it was trained with
```

With vLLM: `vllm serve {facts.base_reference} --enable-lora --max-lora-rank {_serving_rank(lora)} \\
--lora-modules my-model=adapter`.

Into another opentune server: `POST /v1/models/import` with this zip as `file` and
`base_model` naming the same base there.
"""


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def _serving_rank(lora: dict[str, Any]) -> int:
    """The smallest of vLLM's --max-lora-rank values that serves this adapter."""
    rank = lora.get("r")
    ranks = [rank, *(lora.get("rank_pattern") or {}).values()]
    highest = max((r for r in ranks if isinstance(r, int)), default=16)
    return next((r for r in VLLM_LORA_RANKS if r >= max(highest, 8)), highest)
