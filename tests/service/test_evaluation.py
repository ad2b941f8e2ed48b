"""The evaluation report's pure parts (service/jobs/evaluation.py) and its grader's checks
(service/jobs/eval_grader.py). The run through the engine: tests/service/test_evaluator.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from service.errors import InvalidRequest
from service.jobs.eval_grader import check_eval_grader, eval_grader_of
from service.jobs.evaluation import (
    EvalPrompt,
    Side,
    build_report,
    exact_match,
    max_tokens_for,
    prompt_of,
    read_prompts,
    summary,
)
from service.jobs.training_options import parse_training_options
from trainer.data import ChatExample, PreferenceExample, ReinforcementExample
from trainer.graders import GradingContext

USER = {"role": "user", "content": "Classify: fine."}
ANSWER = '{"label": "neutral"}'
SAME = {
    "type": "string_check",
    "name": "same",
    "operation": "eq",
    "input": "{{sample.output_text}}",
    "reference": "{{item.reference_answer}}",
}


def test_a_chat_row_asks_what_came_before_its_last_assistant_message() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        USER,
        {"role": "assistant", "content": "first", "weight": 0},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": ANSWER, "weight": 1},
    ]
    prompt = prompt_of(ChatExample(messages))
    assert prompt is not None and prompt.reference == ANSWER
    assert prompt.messages == [messages[0], USER, {"role": "assistant", "content": "first"}, messages[3]]
    assert prompt.item == {"reference_answer": ANSWER}


@pytest.mark.parametrize(
    "example",
    [
        ChatExample([USER, {"role": "assistant", "content": ANSWER}], tools=[{"function": {"name": "f"}}]),
        ChatExample([USER, {"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}]),
        ChatExample([{"role": "assistant", "content": ANSWER}]),  # nothing asked
    ],
    ids=["tools", "tool-call-answer", "no-prompt"],
)
def test_rows_whose_answer_is_not_plain_text_are_left_out(example: ChatExample) -> None:
    assert prompt_of(example) is None


def test_a_preference_row_is_referenced_by_its_preferred_output() -> None:
    rejected = {"role": "assistant", "content": "no"}
    prompt = prompt_of(PreferenceExample([USER], {"role": "assistant", "content": ANSWER}, rejected))
    assert prompt == EvalPrompt([USER], ANSWER, {"reference_answer": ANSWER})


def test_a_reinforcement_row_has_no_reference_and_its_fields_are_the_item() -> None:
    prompt = prompt_of(ReinforcementExample([USER], {"answer": "neutral", "n": 3}))
    assert prompt == EvalPrompt([USER], None, {"answer": "neutral", "n": 3})


def test_the_first_usable_prompts_of_a_file_are_read(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"messages": [USER, {"role": "assistant", "content": f"a{i}"}]} for i in range(9)
    ]
    rows.insert(
        1, {"messages": [USER, {"role": "assistant", "content": "x"}], "tools": [{"type": "function"}]}
    )
    path = tmp_path / "valid.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [p.reference for p in read_prompts(path, "supervised", 4)] == ["a0", "a1", "a2", "a3"]
    assert len(read_prompts(path, "supervised", 50)) == 9
    assert read_prompts(path, "supervised", 0) == []


def test_exact_match_ignores_only_outer_whitespace() -> None:
    assert exact_match(f"  {ANSWER}\n", ANSWER)
    assert not exact_match('{"label":"neutral"}', ANSWER)
    assert not exact_match(ANSWER.upper(), ANSWER)


def test_the_token_budget_follows_the_reference_within_the_cap() -> None:
    assert max_tokens_for(EvalPrompt([USER], ANSWER, {}), 256) == len(ANSWER) + 8
    assert max_tokens_for(EvalPrompt([USER], "é" * 200, {}), 256) == 256  # 400 bytes
    assert max_tokens_for(EvalPrompt([USER], None, {}), 64) == 64


def test_the_report_puts_both_models_side_by_side() -> None:
    prompts = [EvalPrompt([{"role": "user", "content": f"q{i}"}], ANSWER, {}) for i in range(8)]
    base = Side("tiny", 6.9, ["garbage"] * 7 + [ANSWER], [0.0] * 7 + [1.0])
    tuned = Side("ft:tiny:acme::abc", 0.4, [ANSWER] * 6 + ["x", "y"], [1.0] * 6 + [0.0, 0.0])
    report = build_report(prompts, base, tuned, n_skipped=1, max_tokens=256, grader="same", elapsed_s=1.23456)
    data = json.loads(report.model_dump_json())
    assert data["n_prompts"] == 8 and data["n_skipped"] == 1 and data["elapsed_s"] == 1.235
    assert data["base"] == {"model": "tiny", "valid_loss": 6.9, "exact_match": 0.125, "grader_mean": 0.125}
    assert data["fine_tuned"] == {
        "model": "ft:tiny:acme::abc",
        "valid_loss": 0.4,
        "exact_match": 0.75,
        "grader_mean": 0.75,
    }
    assert len(data["examples"]) == 5
    assert data["examples"][0] == {
        "messages": [{"role": "user", "content": "q0"}],
        "reference": ANSWER,
        "base": "garbage",
        "fine_tuned": ANSWER,
    }
    assert summary(report) == (
        "Evaluation: base exact match 0.12, validation loss 6.9000, grader mean 0.125 vs fine-tuned exact "
        "match 0.75, validation loss 0.4000, grader mean 0.750 (8 validation prompts; details in "
        "eval_report.json)"
    )


def test_reinforcement_reports_only_the_grader() -> None:
    prompts = [EvalPrompt([USER], None, {"answer": "a"})] * 2
    report = build_report(
        prompts,
        Side("tiny", None, ["a", "b"], [1.0, 0.0]),
        Side("ft", None, ["a", "a"], [1.0, 1.0]),
        n_skipped=0,
        max_tokens=64,
        grader="g",
        elapsed_s=0.5,
    )
    assert report.base.exact_match is None and report.base.valid_loss is None
    assert (report.base.grader_mean, report.fine_tuned.grader_mean) == (0.5, 1.0)
    assert summary(report).startswith("Evaluation: base grader mean 0.500 vs fine-tuned grader mean 1.000 (2")


def test_the_eval_grader_is_checked_when_the_job_is_created() -> None:
    context = GradingContext()
    key = "opentune.eval_grader"
    parse_training_options({key: json.dumps(SAME)}, 64)  # a known option, not a training knob
    check_eval_grader({key: json.dumps(SAME)}, context)
    check_eval_grader({"opentune.lora_rank": "8"}, context)
    assert eval_grader_of({key: json.dumps(SAME)}) == SAME and eval_grader_of(None) is None
    for bad, where in [
        ("{not json", "metadata.opentune.eval_grader"),
        ("[1, 2]", "metadata.opentune.eval_grader"),
        (json.dumps({**SAME, "operation": "near"}), "metadata.opentune.eval_grader.operation"),
        (json.dumps({"type": "python", "name": "p", "source": "x"}), "metadata.opentune.eval_grader.source"),
    ]:
        with pytest.raises(InvalidRequest) as raised:
            check_eval_grader({key: bad}, context)
        assert raised.value.param == where, bad
