"""Names of fine-tuned models: `ft:{base}:{org}:{suffix}:{id}`, as OpenAI (empty suffix -> `::`)."""

from __future__ import annotations

import re

from service.ids import random_token

MODEL_ID_LENGTH = 8
# Used with fullmatch: `$` also matches before a trailing newline, so "abc\n" passed `match`.
SUFFIX_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def is_valid_suffix(suffix: str) -> bool:
    return SUFFIX_PATTERN.fullmatch(suffix) is not None


def fine_tuned_model_name(base: str, org: str, suffix: str | None, model_id: str | None = None) -> str:
    """A new, never-reused name; `model_id` is 8 random alphanumerics unless given (tests)."""
    return f"ft:{base}:{org}:{suffix or ''}:{model_id or random_token(MODEL_ID_LENGTH)}"


def checkpoint_model_name(fine_tuned_model: str, step: int) -> str:
    return f"{fine_tuned_model}:ckpt-step-{step}"
