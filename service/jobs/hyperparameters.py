"""Resolving "auto" hyperparameters to numbers once the dataset size is known.

- n_epochs: OpenAI's rule (its data-prep cookbook): 3 epochs, more for tiny datasets so the model
  sees about 100 examples, fewer for huge ones (about 25,000 examples seen), clamped to 1..25.
- batch_size: about 0.2% of the examples, clamped to 1..8 (small batches suit LoRA and small GPUs),
  and lowered to the largest that fits the free memory with the longest example (capacity.py).
- learning_rate_multiplier: 1.0. The learning rate is multiplier x 2e-4, the usual LoRA starting point.
- beta (DPO only): 0.1, TRL's and OpenAI's default.
- reinforcement only: compute_multiplier 1.0 (4 samples per prompt, service/jobs/reinforcement.py),
  eval_interval a tenth of the steps, eval_samples 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

BASE_LEARNING_RATE = 2e-4
SAMPLES_PER_PROMPT = 4  # reinforcement: GRPO's group at compute_multiplier 1.0
DEFAULT_DPO_BETA = 0.1

_TARGET_EPOCHS = 3
_MIN_TARGET_EXAMPLES = 100
_MAX_TARGET_EXAMPLES = 25_000
_MIN_DEFAULT_EPOCHS = 1
_MAX_DEFAULT_EPOCHS = 25


@dataclass(frozen=True)
class ResolvedHyperparameters:
    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float
    beta: float | None = None
    # Reinforcement only.
    compute_multiplier: float | None = None
    samples_per_prompt: int | None = None
    eval_interval: int | None = None
    eval_samples: int | None = None
    reasoning_effort: str | None = None

    @property
    def learning_rate(self) -> float:
        return self.learning_rate_multiplier * BASE_LEARNING_RATE

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "n_epochs": self.n_epochs,
            "batch_size": self.batch_size,
            "learning_rate_multiplier": self.learning_rate_multiplier,
        }
        extras = {
            "beta": self.beta,
            "compute_multiplier": self.compute_multiplier,
            "eval_interval": self.eval_interval,
            "eval_samples": self.eval_samples,
            "reasoning_effort": self.reasoning_effort,
        }
        return wire | {key: value for key, value in extras.items() if value is not None}


def default_epochs(n_examples: int) -> int:
    if n_examples * _TARGET_EPOCHS < _MIN_TARGET_EXAMPLES:
        return min(_MAX_DEFAULT_EPOCHS, _MIN_TARGET_EXAMPLES // max(n_examples, 1))
    if n_examples * _TARGET_EPOCHS > _MAX_TARGET_EXAMPLES:
        return max(_MIN_DEFAULT_EPOCHS, _MAX_TARGET_EXAMPLES // n_examples)
    return _TARGET_EPOCHS


def default_batch_size(n_examples: int) -> int:
    return max(1, min(8, round(n_examples * 0.002)))


def is_auto(requested: dict[str, Any], key: str) -> bool:
    return requested.get(key, "auto") in (None, "auto")


def resolve_hyperparameters(
    requested: dict[str, Any],
    n_examples: int,
    method: str = "supervised",
    batch_size_limit: int | None = None,
) -> ResolvedHyperparameters:
    def pick(key: str, default: Any) -> Any:
        return default if is_auto(requested, key) else requested[key]

    auto_batch_size = default_batch_size(n_examples)
    if batch_size_limit is not None:
        auto_batch_size = min(auto_batch_size, batch_size_limit)
    n_epochs = int(pick("n_epochs", default_epochs(n_examples)))
    batch_size = int(pick("batch_size", auto_batch_size))
    common = ResolvedHyperparameters(
        n_epochs=n_epochs,
        batch_size=batch_size,
        learning_rate_multiplier=float(pick("learning_rate_multiplier", 1.0)),
        beta=float(pick("beta", DEFAULT_DPO_BETA)) if method == "dpo" else None,
    )
    if method != "reinforcement":
        return common
    steps = math.ceil(n_examples / batch_size) * n_epochs
    compute_multiplier = float(pick("compute_multiplier", 1.0))
    return replace(
        common,
        compute_multiplier=compute_multiplier,
        samples_per_prompt=samples_per_prompt(compute_multiplier),
        eval_interval=int(pick("eval_interval", max(1, steps // 10))),
        eval_samples=int(pick("eval_samples", 1)),
        reasoning_effort=str(requested.get("reasoning_effort") or "default"),
    )


def samples_per_prompt(compute_multiplier: float) -> int:
    """compute_multiplier scales GRPO's samples per prompt: 4 at 1.0, at least 2 to compare."""
    return max(2, min(32, round(SAMPLES_PER_PROMPT * compute_multiplier)))
