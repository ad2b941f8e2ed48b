"""Multi graders and their `calculate_output` formula: arithmetic by hand, and a whitelist that
refuses everything else (nothing is ever evaluated as Python)."""

from __future__ import annotations

from typing import Any

import pytest

from trainer.graders import GraderError, GradingContext, Sample, grade, validate
from trainer.graders.formula import Formula
from trainer.graders.results import GradingFailure

pytestmark = pytest.mark.anyio

SCORES = {"name": 1.0, "price": 0.5}


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("(name + price) / 2", 0.75),
        ("name * 0.7 + price * 0.3", 0.85),
        ("name - price", 0.5),
        ("-price + 1", 0.5),
        ("price ^ 2", 0.25),  # OpenAI's ^ is power ...
        ("price ** 2", 0.25),
        ("1 + price ^ 2", 1.25),  # ... binding tighter than + (Python's ^ would not)
        ("2 ^ 3 ^ 2", 512.0),  # right-associative, as ** is
        ("min(name, price, 0.7)", 0.5),
        ("max(name, price)", 1.0),
        ("abs(price - name)", 0.5),
        ("floor(name + price)", 1.0),
        ("ceil(price)", 1.0),
        ("sqrt(price * 2)", 1.0),
        ("exp(0) + log(1)", 1.0),
    ],
)
def test_formula_values(formula: str, expected: float) -> None:
    assert Formula(formula, set(SCORES)).evaluate(SCORES) == pytest.approx(expected)


@pytest.mark.parametrize(
    "formula",
    [
        "__import__('os').system('true')",
        "name.__class__",
        "(lambda: 1)()",
        "[x for x in (1, 2)]",
        "{name: 1}",
        "name[0]",
        "'text'",
        "True",
        "name if price else 1",
        "name < price",
        "name and price",
        "name % 2",
        "name // 2",
        "open('/etc/passwd')",
        "eval('1')",
        "min(*[1, 2])",
        "max(name, key=abs)",
        "abs(name, price)",
        "unknown + 1",
        "name; price",
        "name = 1",
        "",
        "(" * 300 + "name" + ")" * 300,
        "x" * 2000,
    ],
)
def test_anything_else_is_refused(formula: str) -> None:
    with pytest.raises(GraderError):
        Formula(formula, set(SCORES))


@pytest.mark.parametrize(
    "formula", ["name / (price - 0.5)", "log(price - 0.5)", "(0 - price) ^ 0.5", "10 ^ 400"]
)
def test_math_errors_are_grading_failures(formula: str) -> None:
    with pytest.raises(GradingFailure) as failure:
        Formula(formula, set(SCORES)).evaluate(SCORES)
    assert failure.value.flag == "other_error"


def _string_check(operation: str, reference: str) -> dict[str, Any]:
    return {
        "type": "string_check",
        "name": "ignored",
        "operation": operation,
        "input": "{{sample.output_json.name}}",
        "reference": reference,
    }


MULTI = {
    "type": "multi",
    "name": "m",
    "graders": {
        "name": _string_check("eq", "{{item.name}}"),
        "price": {
            "type": "text_similarity",
            "name": "p",
            "input": "{{sample.output_json.price}}",
            "reference": "{{item.price}}",
            "evaluation_metric": "fuzzy_match",
        },
    },
    "calculate_output": "(name + price) / 2",
}


async def test_multi_grader_as_the_rft_guide_writes_it() -> None:
    grader = validate(MULTI, GradingContext())
    sample = Sample.from_text('{"name": "Widget", "price": "1000"}')
    result = await grade(grader, sample, {"name": "Widget", "price": "100"}, GradingContext())
    # name: 1.0; price: fuzz.ratio("1000", "100") = 2 x 3 / 7 -> (1 + 6/7) / 2 = 13/14.
    assert result.sub_rewards == pytest.approx({"name": 1.0, "price": 6 / 7})
    assert result.reward == pytest.approx(13 / 14)
    assert (result.name, result.type, result.errors.any) == ("m", "multi", False)


async def test_a_failing_sub_grader_counts_zero_and_shows_its_flag() -> None:
    grader = validate(MULTI, GradingContext())
    result = await grade(
        grader, Sample.from_text("not json"), {"name": "Widget", "price": "100"}, GradingContext()
    )
    assert result.reward == 0.0
    assert result.sub_rewards == {"name": 0.0, "price": 0.0}
    assert result.errors.sample_parse_error


def test_the_sdk_single_grader_shape_is_named_by_its_name() -> None:
    grader = validate(
        {**MULTI, "graders": _string_check("eq", "x") | {"name": "only"}, "calculate_output": "only * 2"},
        GradingContext(),
    )
    assert list(grader.graders) == ["only"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"calculate_output": "name + nope"}, "grader.calculate_output"),
        ({"calculate_output": "__import__('os')"}, "grader.calculate_output"),
        ({"graders": {"a": _string_check("eq", "{{bad.x}}")}}, "grader.graders.a.reference"),
        ({"graders": {"a": {**MULTI, "name": "inner"}}}, None),  # no nesting
        ({"graders": {str(i): _string_check("eq", "x") for i in range(21)}}, "grader.graders"),
    ],
)
def test_invalid_multi_graders(change: dict[str, Any], param: str | None) -> None:
    with pytest.raises(GraderError) as error:
        validate({**MULTI, **change}, GradingContext())
    if param is not None:
        assert error.value.param == param
