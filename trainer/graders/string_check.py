"""`string_check`: 1.0 or 0.0, as OpenAI's graders guide defines the operations.

- `eq`: the input equals the reference (case-sensitive); `ne`: it does not.
- `like`: the input contains the reference (case-sensitive); `ilike`: the same, case-insensitive.

`like` and `ilike` are containment, not SQL's LIKE patterns: `%` and `_` are ordinary characters
(OpenAI documents them as "contains"). Case folding is Unicode's (`str.casefold`).
"""

from __future__ import annotations

from typing import Any

from trainer.graders.models import StringCheckGrader
from trainer.graders.templates import Sample, check, render


def validate(grader: StringCheckGrader, param: str) -> None:
    check(grader.input, f"{param}.input")
    check(grader.reference, f"{param}.reference")


def score(grader: StringCheckGrader, sample: Sample, item: Any) -> float:
    text = render(grader.input, sample, item)
    reference = render(grader.reference, sample, item)
    return 1.0 if compare(grader.operation, text, reference) else 0.0


def compare(operation: str, text: str, reference: str) -> bool:
    if operation == "eq":
        return text == reference
    if operation == "ne":
        return text != reference
    if operation == "like":
        return reference in text
    if operation == "ilike":
        return reference.casefold() in text.casefold()
    raise ValueError(f"unknown string_check operation {operation!r}")
