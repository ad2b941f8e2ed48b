"""Graders through the stock SDK on the shared server: `client.fine_tuning.alpha.graders.validate`
and `.run` for each grader type, model graders calling the served tiny model through the server's
own engine, and python graders confined (no data folder, no server secrets)."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai import OpenAI

from tests.e2e.conftest import API_KEY, BASE_MODEL, Server

pytestmark = pytest.mark.e2e

EXACT: Any = {
    "type": "string_check",
    "name": "exact",
    "operation": "eq",
    "input": "{{sample.output_json.city}}",
    "reference": "{{item.city}}",
}

JUDGE: Any = {
    "type": "score_model",
    "name": "j",
    "model": BASE_MODEL,
    "input": [{"role": "user", "content": "?"}],
}


def test_validate_and_run_a_string_check(client: OpenAI) -> None:
    validated = client.fine_tuning.alpha.graders.validate(grader=EXACT)
    assert validated.grader is not None and validated.grader.type == "string_check"
    result = client.fine_tuning.alpha.graders.run(
        grader=EXACT, model_sample='{"city": "Paris"}', item={"city": "Paris"}
    )
    assert result.reward == 1.0
    assert result.metadata.name == "exact" and result.metadata.type == "string_check"
    assert not result.metadata.errors.invalid_variable_error
    missing = client.fine_tuning.alpha.graders.run(grader=EXACT, model_sample='{"city": "Paris"}', item={})
    assert missing.reward == 0.0 and missing.metadata.errors.invalid_variable_error


def test_multi_grader_over_text_similarity_and_python(client: OpenAI) -> None:
    grader: Any = {
        "type": "multi",
        "name": "combined",
        "graders": {
            "rouge": {
                "type": "text_similarity",
                "name": "rouge",
                "input": "{{sample.output_text}}",
                "reference": "{{item.reference}}",
                "evaluation_metric": "rouge_1",
            },
            "short": {
                "type": "python",
                "name": "short",
                "source": "def grade(sample, item):\n    return float(len(sample['output_text']) < 40)\n",
            },
        },
        "calculate_output": "(rouge + short) / 2",
    }
    result = client.fine_tuning.alpha.graders.run(
        grader=grader, model_sample="the cat sat on the mat", item={"reference": "the cat sat on a mat"}
    )
    assert result.sub_rewards == pytest.approx({"rouge": 5 / 6, "short": 1.0})
    assert result.reward == pytest.approx((5 / 6 + 1) / 2)


def test_python_graders_see_neither_the_data_folder_nor_the_servers_secrets(
    client: OpenAI, server: Server
) -> None:
    source = (
        "import os\n"
        "def grade(sample, item):\n"
        "    seen = ''\n"
        "    for pid in (p for p in os.listdir('/proc') if p.isdigit()):\n"
        "        seen += open(f'/proc/{pid}/environ', 'rb').read().decode()\n"
        "    if item['key'] in seen:\n"
        "        return 1.0\n"
        "    return len(open(item['database']).read())\n"
    )
    grader: Any = {"type": "python", "name": "snoop", "source": source}
    item = {"key": API_KEY, "database": str(server.data_dir / "opentune.db")}
    result = client.fine_tuning.alpha.graders.run(grader=grader, model_sample="x", item=item)
    assert result.reward == 0.0
    assert result.metadata.errors.python_grader_runtime_error
    assert "FileNotFoundError" in (result.metadata.errors.python_grader_runtime_error_details or "")


def test_score_model_grader_calls_the_served_model(client: OpenAI) -> None:
    grader: Any = {
        "type": "score_model",
        "name": "judge",
        "model": BASE_MODEL,
        "input": [
            {"role": "system", "content": "Rate the answer from 0 to 1."},
            {"role": "user", "content": "Answer: {{sample.output_text}}. Expected: {{item.answer}}."},
        ],
        "sampling_params": {"temperature": 0, "seed": 1, "max_completions_tokens": 24},
    }
    assert client.fine_tuning.alpha.graders.validate(grader=grader).grader is not None
    item = {"answer": "Paris"}
    result = client.fine_tuning.alpha.graders.run(grader=grader, model_sample="Paris", item=item)
    assert result.metadata.sampled_model_name == BASE_MODEL
    usage: Any = result.model_grader_token_usage_per_model[BASE_MODEL]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0, result.metadata.errors
    assert result.metadata.token_usage == usage["total_tokens"]
    # The tiny model is random: structured output makes its reply a JSON object with a number,
    # unless the number runs past max_completions_tokens; then it does not parse.
    errors = result.metadata.errors
    if errors.model_grader_parse_error:
        assert result.reward == 0.0
    else:
        assert 0.0 <= result.reward <= 1.0 and not errors.model_grader_server_error


def test_label_model_grader_gets_one_of_the_labels(client: OpenAI) -> None:
    grader: Any = {
        "type": "label_model",
        "name": "polite",
        "model": BASE_MODEL,
        "input": [{"role": "user", "content": "Is this polite? {{sample.output_text}}"}],
        "labels": ["yes", "no"],
        "passing_labels": ["yes", "no"],
    }
    result = client.fine_tuning.alpha.graders.run(grader=grader, model_sample="Thank you!", item={})
    assert result.reward == 1.0, result.metadata.errors  # constrained to a label, and both pass
    assert not result.metadata.errors.model_grader_parse_error


@pytest.mark.parametrize(
    ("grader", "param"),
    [
        ({**EXACT, "operation": "contains"}, "grader.operation"),
        ({**EXACT, "input": "{{env.HOME}}"}, "grader.input"),
        ({**JUDGE, "model": "gpt-4o"}, "grader.model"),
        (
            {"type": "multi", "name": "m", "graders": {"a": EXACT}, "calculate_output": "__import__('os')"},
            "grader.calculate_output",
        ),
    ],
)
def test_invalid_graders_are_bad_requests(client: OpenAI, grader: Any, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.fine_tuning.alpha.graders.validate(grader=grader)
    assert refused.value.param == param
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.alpha.graders.run(grader=grader, model_sample="x")
