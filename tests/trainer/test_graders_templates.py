"""Grader templates and string_check: hand-checked values, validation errors with their param."""

from __future__ import annotations

from typing import Any

import pytest

from trainer.graders import GraderError, GradingContext, Sample, grade, validate
from trainer.graders.results import GradingFailure
from trainer.graders.templates import lookup, render

pytestmark = pytest.mark.anyio

ITEM = {"answer": "Paris", "city": {"name": "Lyon", "zip": 69000}, "tags": ["a", "b"], "n": 2.5}


def _check(operation: str, input_: str, reference: str) -> dict[str, Any]:
    return {
        "type": "string_check",
        "name": "s",
        "operation": operation,
        "input": input_,
        "reference": reference,
    }


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("item.answer", "Paris"),
        (" item.city.name ", "Lyon"),
        ("item.city.zip", 69000),
        ("item.tags[1]", "b"),
        ("item.tags.0", "a"),
        ('item["answer"]', "Paris"),
        ("sample.output_text", '{"city": "Lyon"}'),
        ("sample.output_json.city", "Lyon"),
    ],
)
def test_lookup_follows_json_paths(expression: str, expected: Any) -> None:
    assert lookup(expression, Sample.from_text('{"city": "Lyon"}'), ITEM) == expected


def test_render_puts_strings_as_they_are_and_other_values_as_json() -> None:
    sample = Sample.from_text("hello")
    text = "{{sample.output_text}} {{ item.answer }} {{item.city}} {{item.tags}} {{item.n}}"
    assert render(text, sample, ITEM) == 'hello Paris {"name":"Lyon","zip":69000} ["a","b"] 2.5'


@pytest.mark.parametrize(
    ("expression", "flag"),
    [
        ("item.missing", "invalid_variable_error"),
        ("item.tags[5]", "invalid_variable_error"),
        ("item.answer.deeper", "invalid_variable_error"),
        ("sample.output_json.city", "sample_parse_error"),  # the sample is not JSON
    ],
)
def test_a_missing_variable_is_a_grading_failure(expression: str, flag: str) -> None:
    with pytest.raises(GradingFailure) as failure:
        render("{{" + expression + "}}", Sample.from_text("not json"), ITEM)
    assert failure.value.flag == flag


@pytest.mark.parametrize(
    "text",
    ["{{ other.x }}", "{{sample.nope}}", "{{sample.output_text.x}}", "{{item..x}}", "{{}}", "{{ item.a b }}"],
)
def test_validation_refuses_unknown_namespaces_and_bad_paths(text: str) -> None:
    with pytest.raises(GraderError) as error:
        validate(_check("eq", text, "x"), GradingContext())
    assert error.value.param == "grader.input"


@pytest.mark.parametrize(
    ("operation", "input_", "reference", "reward"),
    [
        ("eq", "Paris", "Paris", 1.0),
        ("eq", "paris", "Paris", 0.0),  # case-sensitive
        ("ne", "paris", "Paris", 1.0),
        ("ne", "Paris", "Paris", 0.0),
        ("like", "I think Paris is right", "Paris", 1.0),  # contains
        ("like", "I think paris is right", "Paris", 0.0),
        ("like", "100% sure", "0%", 1.0),  # % is a character, not a wildcard
        ("like", "abc", "a%c", 0.0),
        ("ilike", "I think PARIS is right", "paris", 1.0),
        ("ilike", "I think Lyon", "paris", 0.0),
    ],
)
async def test_string_check(operation: str, input_: str, reference: str, reward: float) -> None:
    grader = validate(_check(operation, input_, reference), GradingContext())
    result = await grade(grader, Sample.from_text(""), {}, GradingContext())
    assert (result.reward, result.errors.any) == (reward, False)


async def test_string_check_with_templates_and_a_missing_variable() -> None:
    grader = validate(_check("eq", "{{sample.output_text}}", "{{item.answer}}"), GradingContext())
    assert (await grade(grader, Sample.from_text("Paris"), ITEM, GradingContext())).reward == 1.0
    missing = await grade(grader, Sample.from_text("Paris"), {"other": 1}, GradingContext())
    assert missing.reward == 0.0
    assert missing.errors.invalid_variable_error
    assert (missing.name, missing.type) == ("s", "string_check")


def test_invalid_shapes_name_the_field() -> None:
    with pytest.raises(GraderError) as error:
        validate(_check("contains", "a", "b"), GradingContext())
    assert error.value.param == "grader.operation"
    with pytest.raises(GraderError):
        validate({"type": "nope", "name": "x"}, GradingContext())


def test_unknown_fields_are_ignored() -> None:
    grader = validate({**_check("eq", "a", "a"), "pass_threshold": 0.5, "extra": {}}, GradingContext())
    assert grader.type == "string_check"
