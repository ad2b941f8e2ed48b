"""OpenAI's grader templates: `{{ namespace.path }}` in a grader's strings is replaced by a value.

Namespaces: `item` (the training or eval row, any JSON) and `sample` (the model's output:
`output_text`, the text; `output_json`, the text parsed as JSON when it is JSON; `output_tools`,
always empty here). Paths are JSON-path like: `item.answer.city`, `item.choices[0]`,
`item.choices.0`, `item["a key"]`. A string value goes in as it is; anything else as compact JSON.

`check` (at validation) refuses other namespaces and malformed paths; `render` (at grading) raises
GradingFailure("invalid_variable_error") for a path the item or sample does not have, and
"sample_parse_error" for `sample.output_json` when the sample is not JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trainer.graders.results import GraderError, GradingFailure

PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
# One step of a path: `.key` (or the first key), `[3]`, `['key']`, `["key"]`.
_STEP = re.compile(r"""\.?([^.\[\]'"\s]+)|\[(\d+)\]|\['([^']*)'\]|\["([^"]*)"\]""")
_SAMPLE_FIELDS = ("output_text", "output_json", "output_tools")
_NOT_JSON = object()


@dataclass(frozen=True)
class Sample:
    """The model's output being graded."""

    output_text: str
    output_json: Any = _NOT_JSON  # the text parsed as JSON, when it is JSON

    @classmethod
    def from_text(cls, text: str) -> Sample:
        try:
            return cls(text, json.loads(text))
        except (ValueError, RecursionError):
            return cls(text)

    @property
    def is_json(self) -> bool:
        return self.output_json is not _NOT_JSON

    def as_dict(self) -> dict[str, Any]:
        """The `sample` a python grader's `grade(sample, item)` receives."""
        return {
            "output_text": self.output_text,
            "output_json": self.output_json if self.is_json else None,
            "output_tools": [],
        }


def parse_path(expression: str) -> list[str | int]:
    """`item.a[0].b` -> ["item", "a", 0, "b"]; GraderError if it is not a path."""
    steps: list[str | int] = []
    position = 0
    text = expression.strip()
    while position < len(text):
        match = _STEP.match(text, position)
        if match is None or match.end() == position or (position == 0 and text.startswith(".")):
            raise GraderError(f"'{{{{{expression}}}}}' is not a template variable like {{{{item.field}}}}.")
        key, index, single, double = match.groups()
        name = next(s for s in (key, single, double) if s is not None) if index is None else None
        steps.append(int(index) if index is not None else str(name))
        position = match.end()
    if not steps:
        raise GraderError("An empty template variable '{{}}'.")
    return steps


def check(text: str, param: str) -> None:
    """Refuse variables outside the `item` and `sample` namespaces (GraderError naming `param`)."""
    for match in PLACEHOLDER.finditer(text):
        try:
            steps = parse_path(match.group(1))
        except GraderError as exc:
            raise GraderError(exc.message, param) from None
        namespace = steps[0]
        if namespace == "sample":
            if len(steps) < 2 or steps[1] not in _SAMPLE_FIELDS:
                raise GraderError(
                    f"Unknown sample variable '{match.group(0)}': the sample has "
                    f"{', '.join('sample.' + f for f in _SAMPLE_FIELDS)}.",
                    param,
                )
            if steps[1] != "output_json" and len(steps) > 2:
                raise GraderError(f"'{match.group(0)}': sample.{steps[1]} has no fields.", param)
        elif namespace != "item":
            raise GraderError(
                f"Unknown template namespace in '{match.group(0)}': the namespaces are item and sample.",
                param,
            )


def render(text: str, sample: Sample, item: Any) -> str:
    """`text` with each variable replaced by its value (GradingFailure when it has none)."""
    if "{{" not in text:
        return text
    return PLACEHOLDER.sub(lambda match: _as_text(lookup(match.group(1), sample, item)), text)


def lookup(expression: str, sample: Sample, item: Any) -> Any:
    try:
        steps = parse_path(expression)
    except GraderError as exc:  # `check` refuses these at validation; a grader not validated
        raise GradingFailure("invalid_variable_error", exc.message) from None
    if steps[0] == "sample":
        field = steps[1] if len(steps) > 1 else None
        if field == "output_text":
            value: Any = sample.output_text
        elif field == "output_tools":
            value = []
        elif field == "output_json":
            if not sample.is_json:
                raise GradingFailure("sample_parse_error", "The sample is not valid JSON.")
            value = sample.output_json
        else:
            raise GradingFailure("invalid_variable_error", f"No variable '{expression.strip()}'.")
        return _walk(value, steps[2:], expression)
    if steps[0] == "item":
        return _walk(item, steps[1:], expression)
    raise GradingFailure("invalid_variable_error", f"No variable '{expression.strip()}'.")


def _walk(value: Any, steps: list[str | int], expression: str) -> Any:
    for step in steps:
        if isinstance(value, Mapping) and str(step) in value:
            value = value[str(step)]
        elif isinstance(value, list) and (isinstance(step, int) or step.isdigit()) and int(step) < len(value):
            value = value[int(step)]
        else:
            raise GradingFailure("invalid_variable_error", f"No variable '{expression.strip()}' in this row.")
    return value


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
