"""Whether a reinforcement job's grader can run on its training file: every `{{item.*}}` its
templates name must exist in the first rows (a missing field would score every sample 0 for the
whole job). Runs in the file-check child (trainer/inspect_files.py), which has no python sandbox:
python graders' code is not run here, only templates are checked."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trainer.data import ReinforcementExample
from trainer.graders import GradingFailure, Sample
from trainer.graders.templates import render

ROWS_CHECKED = 3


def first_rows_problem(examples: Iterable[ReinforcementExample], grader: dict[str, Any]) -> str | None:
    """The first problem of the grader on the first rows, as a message; None when it runs."""
    templates = list(_templates(grader))
    for line, example in enumerate(examples, start=1):
        if line > ROWS_CHECKED:
            return None
        for template in templates:
            try:
                render(template, Sample.from_text(""), example.item)
            except GradingFailure as failure:
                if failure.flag == "invalid_variable_error":  # the row's fault, not the empty sample's
                    return f"The grader cannot run on line {line} of the training file: {failure}"
    return None


def _templates(value: Any, key: str | None = None) -> Iterable[str]:
    """Every string of the grader that holds a template, except python graders' source code."""
    if isinstance(value, str) and "{{" in value and key != "source":
        yield value
    elif isinstance(value, dict):
        for child_key, child in value.items():
            yield from _templates(child, str(child_key))
    elif isinstance(value, list):
        for child in value:
            yield from _templates(child, key)
