"""Per-organization limits on fine-tuning jobs, checked when a job is created.

A job's trained tokens are not known until its file is tokenized (after creation), so the bound is
checked on what is known: the training file's bytes times its epochs. A byte-level BPE tokenizer
makes at most one token per byte of text (the JSON around the messages outweighs the chat
template's added tokens), so this over-estimates. "auto" epochs count as 3, their value for any
file of 34 examples or more (smaller files get more epochs, but are small).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from service.config import Settings
from service.errors import InvalidRequest, QuotaExceeded

AUTO_EPOCHS_ESTIMATE = 3


@dataclass(frozen=True)
class JobLimits:
    max_active_jobs: int
    max_trained_tokens: int
    max_integrations_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> JobLimits:
        return cls(
            max_active_jobs=settings.max_active_jobs_per_org,
            max_trained_tokens=settings.max_trained_tokens_per_job,
            max_integrations_bytes=settings.max_integrations_bytes,
        )


def check_active_jobs(limits: JobLimits, active_jobs: int) -> None:
    if active_jobs >= limits.max_active_jobs:
        raise QuotaExceeded(
            f"Your organization has {active_jobs} active fine-tuning jobs (validating_files, queued, "
            f"running or paused), the most allowed is {limits.max_active_jobs}. Wait for one to "
            "finish or cancel one.",
            param=None,
        )


def check_trained_tokens(limits: JobLimits, training_file_bytes: int, n_epochs: int | str) -> None:
    epochs = AUTO_EPOCHS_ESTIMATE if n_epochs == "auto" else int(n_epochs)
    estimate = training_file_bytes * epochs
    if estimate > limits.max_trained_tokens:
        raise InvalidRequest(
            f"This job could train up to {estimate:,} tokens ({training_file_bytes:,} bytes x {epochs} "
            f"epochs); the most allowed per job is {limits.max_trained_tokens:,}. Use fewer epochs "
            "or a smaller training file.",
            param="training_file",
            code="job_too_large",
        )


def check_integrations(limits: JobLimits, integrations: list[dict[str, Any]] | None) -> None:
    if not integrations:
        return
    size = len(json.dumps(integrations).encode())
    if size > limits.max_integrations_bytes:
        most = limits.max_integrations_bytes
        raise InvalidRequest(
            f"integrations are {size:,} bytes as JSON; the most allowed is {most:,}.",
            param="integrations",
        )
