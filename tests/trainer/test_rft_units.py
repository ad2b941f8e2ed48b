"""Reinforcement fine-tuning's pieces without a model: its data file and its reward function."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest

from trainer.data import DataValidationError, load_reinforcement_examples
from trainer.events import EventWriter
from trainer.rewards import GraderReward, checked_grader, completion_text, grading_context
from trainer.spec import ReinforcementSettings


def _row(number: int, **fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": f"question {number}"}], **fields}


def _write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_rows_keep_their_other_fields_for_the_grader(tmp_path: Path) -> None:
    rows = [_row(n, answer=str(n), meta={"tags": ["a"] * n}) for n in range(10)]
    rows[0]["messages"] = [
        {"role": "developer", "content": "Answer with a number."},
        {"role": "user", "content": "two?"},
        {"role": "assistant", "content": "2", "weight": 0},
        {"role": "user", "content": "and three?"},
    ]
    examples = load_reinforcement_examples(_write(tmp_path / "t.jsonl", rows))
    assert len(examples) == 10
    assert examples[0].messages[-1] == {"role": "user", "content": "and three?"}
    assert examples[3].item == {"answer": "3", "meta": {"tags": ["a", "a", "a"]}}
    assert "messages" not in examples[3].item


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
            "Example 4: the last message must be a user message (the prompt the model answers), not "
            "'assistant'",
        ),
        (
            {"messages": [{"role": "system", "content": "be brief"}]},
            "Example 4: the last message must be a user",
        ),
        ({"messages": []}, "Example 4: 'messages' must be a non-empty list."),
        ({"answer": "3"}, "Example 4: 'messages' must be a non-empty list."),
        ({"messages": [{"role": "user", "content": 7}]}, "Example 4, message 1: 'content' must be a string"),
        ({"messages": [{"role": "user", "content": "q"}], "tools": []}, "'tools' is not supported"),
        ({"input": {"messages": []}, "preferred_output": []}, "preference (DPO) format"),
        ("[1, 2]", "Example 4"),
    ],
)
def test_bad_rows_are_named_with_their_line(tmp_path: Path, bad: Any, expected: str) -> None:
    rows: list[Any] = [_row(n) for n in range(12)]
    rows[3] = bad
    with pytest.raises(DataValidationError) as err:
        load_reinforcement_examples(_write(tmp_path / "t.jsonl", rows))
    assert err.value.code == "invalid_training_file"
    assert expected in err.value.message
    assert err.value.param == "training_file"


def test_a_validation_file_may_be_small_and_says_so_in_its_errors(tmp_path: Path) -> None:
    assert len(load_reinforcement_examples(_write(tmp_path / "v.jsonl", [_row(1)]), "validation_file")) == 1
    with pytest.raises(DataValidationError) as err:
        load_reinforcement_examples(_write(tmp_path / "v.jsonl", ["{"]), "validation_file")
    assert (err.value.code, err.value.param) == ("invalid_validation_file", "validation_file")


def test_too_few_training_rows(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError) as err:
        load_reinforcement_examples(_write(tmp_path / "t.jsonl", [_row(n) for n in range(3)]))
    assert err.value.code == "invalid_n_examples"


def _reward(grader: dict[str, Any], items: list[dict[str, Any]]) -> tuple[GraderReward, io.StringIO]:
    settings = ReinforcementSettings(grader=grader, python_grader_timeout_s=5)
    context = grading_context(settings, hidden=[])
    stream = io.StringIO()
    return GraderReward(checked_grader(settings, context), context, items, EventWriter(stream)), stream


def _completions(*texts: str) -> list[list[dict[str, str]]]:
    return [[{"role": "assistant", "content": text}] for text in texts]


def test_string_check_rewards_each_completion_against_its_row() -> None:
    grader = {
        "type": "string_check",
        "name": "exact",
        "input": "{{sample.output_text}}",
        "reference": "{{item.answer}}",
        "operation": "eq",
    }
    reward, stream = _reward(grader, [{"answer": "4"}, {"answer": "9"}])
    rewards = asyncio.run(reward(completions=_completions("4", "4", "9", "x"), row=[0, 1, 1, 0]))
    assert rewards == [1.0, 0.0, 1.0, 0.0]
    assert (reward.graded, reward.failed) == (4, 0) and stream.getvalue() == ""


def test_grading_errors_score_zero_and_warn_once() -> None:
    source = (
        "def grade(sample, item):\n"
        "    if item['kind'] == 'broken':\n"
        "        raise ValueError('no such field')\n"
        "    return len(sample['output_text']) / 10\n"
    )
    grader = {"type": "python", "name": "length", "source": source}
    reward, stream = _reward(grader, [{"kind": "ok"}, {"kind": "broken"}])
    completions = _completions("abc", "abcde", "abc", "abcdefgh")

    async def two_steps() -> list[list[float]]:  # on one event loop, as TRL calls it
        return [await reward(completions=completions, row=rows) for rows in ([0, 1, 1, 0], [1, 1, 1, 0])]

    assert asyncio.run(two_steps()) == [[0.3, 0.0, 0.0, 0.8], [0.0, 0.0, 0.0, 0.8]]
    assert (reward.graded, reward.failed) == (8, 5)
    warnings = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(warnings) == 1 and warnings[0]["level"] == "warn", "warned once, however often it fails"
    assert "failed on 2 of 4 samples" in warnings[0]["message"]
    assert (
        "python_grader_runtime_error" in warnings[0]["message"] and "no such field" in warnings[0]["message"]
    )
    assert reward.summary() == "The grader scored 8 samples; 5 failed and scored 0"


def test_template_errors_score_zero() -> None:
    grader = {
        "type": "string_check",
        "name": "exact",
        "input": "{{sample.output_json.answer}}",
        "reference": "{{item.answer}}",
        "operation": "eq",
    }
    reward, _stream = _reward(grader, [{"answer": "4"}])
    completions = _completions('{"answer": "4"}', "not json", '{"other": 1}')
    assert asyncio.run(reward(completions=completions, row=[0, 0, 0])) == [1.0, 0.0, 0.0]
    assert reward.failed == 2


@pytest.mark.parametrize(
    ("grader", "param"),
    [
        ({"type": "python", "name": "p", "source": "x = 1"}, "method.reinforcement.grader.source"),
        ({"type": "score_model", "name": "m", "model": "gpt-4o", "input": []}, "method.reinforcement.grader"),
        ({"type": "nonsense"}, "method.reinforcement.grader"),
    ],
)
def test_an_unusable_grader_is_a_job_error(grader: dict[str, Any], param: str) -> None:
    settings = ReinforcementSettings(grader=grader)
    with pytest.raises(DataValidationError) as err:
        checked_grader(settings, grading_context(settings, hidden=[]))
    assert err.value.code == "invalid_grader"
    assert err.value.param.startswith(param)


def test_completion_text_reads_both_shapes() -> None:
    assert completion_text("plain") == "plain"
    assert (
        completion_text([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": None}])
        == "a"
    )
